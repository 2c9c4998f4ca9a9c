"""A trainer (``tools.train``) that SIGKILLs itself at a chosen point, for resume tests.

  python tests/kill_child.py POINT N <tools.train flags>

POINT (the N-th time in this process):
  record       before experiment.gin is written (start-up);
  step         after training step N ends (mid-epoch; N counts steps across epochs, from 1);
  best_weights before best.weights.h5 is renamed into place (its temporary file is complete);
  best_json    after best.weights.h5 is replaced, before best.json is written;
  events       after an epoch's TensorBoard events file is in place, before the checkpoint;
  checkpoint   after a checkpoint's files are written, before the index names it.
"""
import os
import signal
import sys

POINT, OCCURRENCE = sys.argv[1], int(sys.argv[2])
seen = 0


def hit():
    global seen
    seen += 1
    if seen == OCCURRENCE:
        os.kill(os.getpid(), signal.SIGKILL)


def patch():
    import tensorflow as tf

    from lite_tf import atomic, callbacks, model_dir

    if POINT == "record":
        original_record = model_dir.ModelDir.record
        model_dir.ModelDir.record = lambda self, text: (hit(), original_record(self, text))[1]
    elif POINT == "step":
        original_batch_end = callbacks.EpochEvents.on_train_batch_end

        def on_train_batch_end(self, batch, logs=None):
            original_batch_end(self, batch, logs)
            if self._first_step + batch == OCCURRENCE:
                os.kill(os.getpid(), signal.SIGKILL)
        callbacks.EpochEvents.on_train_batch_end = on_train_batch_end
    elif POINT == "best_weights":
        original_replace = callbacks.os.replace

        def replace(source, destination):
            if str(destination).endswith("best.weights.h5"):
                hit()
            return original_replace(source, destination)
        callbacks.os.replace = replace  # os itself: the module object callbacks and atomic share
    elif POINT == "best_json":
        original_write_json = atomic.write_json

        def write_json(path, data, **kwargs):
            if str(path).endswith("best.json"):
                hit()
            return original_write_json(path, data, **kwargs)
        atomic.write_json = write_json
    elif POINT == "events":
        original_write_events = callbacks.write_events

        def write_events(folder, epoch, write):
            path = original_write_events(folder, epoch, write)
            if os.path.basename(folder) == "train":
                hit()
            return path
        callbacks.write_events = write_events
    elif POINT == "checkpoint":
        def save(self, checkpoint_number=None, **kwargs):
            self._checkpoint.write(f"{self._prefix}-{checkpoint_number}")  # data and index files, not `checkpoint`
            hit()
            return original_save(self, checkpoint_number=checkpoint_number, **kwargs)
        original_save = tf.train.CheckpointManager.save
        tf.train.CheckpointManager.save = save
    else:
        raise SystemExit(f"unknown kill point {POINT!r}")


if __name__ == "__main__":
    patch()
    from lite_tf.tools import train

    sys.argv = ["train", *sys.argv[3:]]
    train.run()
