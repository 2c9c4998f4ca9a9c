"""Meta-train a learner from gin config files.

  python -m tools.train --gin_config=gin/quickstart.gin --data_root=demo_data --model_dir=runs/quickstart

Writes into --model_dir: experiment.gin (the parsed configuration; a rerun with a different one is
refused), operative_config.gin, checkpoints/ (resumable: rerunning the same command after any
crash or kill continues from the last completed epoch), best.weights.h5 (best validation
accuracy) and logs/ (TensorBoard).
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging

def define_flags():
    """Defines this tool's flags (only when it runs, so tools can be imported together)."""
    flags.DEFINE_multi_string("gin_config", [], "Gin config file(s), parsed in order.")
    flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings, e.g. \"Training.epochs = 5\".")
    flags.DEFINE_string("model_dir", None, "Folder for checkpoints, logs and the configuration.")
    flags.DEFINE_string("data_root", None, "Root folder of the data (e.g. Meta-Dataset records, ORBIT frames).")
    flags.DEFINE_bool("list_plugins", False, "List the registered learners and backbones, then exit.")
    flags.DEFINE_integer("verbose", 1, "Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch.")


FLAGS = flags.FLAGS


def list_plugins() -> str:
    from lite_tf import registry

    return ("Learners:  " + ", ".join(registry.list_learners()) + "\n"
            "Backbones: " + ", ".join(registry.list_backbones()))


def train(model_dir: str, configs, bindings, data_root=None, verbose: int = 1) -> dict:
    """Runs (or resumes) one experiment; returns the last epoch's logs."""
    import keras

    from lite_tf import callbacks as lite_callbacks
    from tools import experiment

    # Everything that can be wrong is checked before the model dir is written to.
    config_text = experiment.parse_gin(configs, bindings)
    experiment.check_model_dir(model_dir, config_text)
    model, training = experiment.build()
    checkpoints = os.path.join(model_dir, "checkpoints")
    checkpoint = lite_callbacks.ResumableCheckpoint(checkpoints, model)
    initial_epoch = checkpoint.restore() if os.path.isdir(checkpoints) else 0
    try:
        # A resumed run draws new episodes rather than replaying the ones already trained on.
        train_data = training.dataset(data_root, training.train_split, seed=training.seed + 1000 * initial_epoch)
        valid_data = training.dataset(data_root, training.valid_split, seed=training.seed + 1)
    except (ValueError, OSError) as error:
        raise experiment.ExperimentError(f"Could not open the data (--data_root={data_root!r}): {error}") from error
    experiment.record_experiment(model_dir, config_text)
    if initial_epoch >= training.epochs:
        logging.info("Training already finished (%d epochs) in %s.", initial_epoch, model_dir)
        return {}
    if initial_epoch:
        logging.info("Resuming from the end of epoch %d.", initial_epoch)
    valid_data = valid_data.take(training.validation_episodes).cache()
    log_dir = os.path.join(model_dir, "logs")
    stop_on_nan = lite_callbacks.StopOnNaN()
    callbacks = [
        stop_on_nan,
        keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch", write_graph=False),
        lite_callbacks.EpisodeStatistics(log_dir, every=training.statistics_every),
        lite_callbacks.EpisodeImages(log_dir, next(iter(valid_data)), every=training.image_log_every),
        lite_callbacks.BestWeights(os.path.join(model_dir, "best.weights.h5")),
        checkpoint,
    ]
    history = model.fit(train_data, epochs=training.epochs, initial_epoch=initial_epoch,
                        steps_per_epoch=training.episodes_per_epoch, validation_data=valid_data,
                        validation_freq=training.validate_every, callbacks=callbacks, verbose=verbose)
    experiment.write_operative_config(model_dir)
    if stop_on_nan.failed_at is not None:
        batch, loss = stop_on_nan.failed_at
        raise FloatingPointError(
            f"Training stopped: the loss became {loss} at episode {batch + 1} of epoch "
            f"{len(history.epoch) + initial_epoch}. The last good state is in {model_dir}/checkpoints; "
            "lower the learning rate or check the data, then rerun."
        )
    return {key: values[-1] for key, values in history.history.items()}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.list_plugins:
        print(list_plugins())
        return 0
    from tools.experiment import ExperimentError

    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required.")
    if not FLAGS.gin_config:
        raise app.UsageError("At least one --gin_config is required (e.g. gin/quickstart.gin).")
    try:
        logs = train(FLAGS.model_dir, FLAGS.gin_config, FLAGS.gin_bindings, FLAGS.data_root, FLAGS.verbose)
    except (ExperimentError, FloatingPointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if logs:
        print("Finished: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items())))
    return 0


def run():
    """Console-script entry point."""
    define_flags()
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
