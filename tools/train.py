"""Meta-train a learner from gin config files (or resume one).

  python -m tools.train --gin_config=gin/quickstart.gin --data_root=demo_data --model_dir=runs/quickstart

What --model_dir holds and how a rerun resumes: README, "What a run writes, and resuming"
(lite_tf/model_dir.py, lite_tf/experiment.py).
"""
from __future__ import annotations

from absl import flags

from lite_tf import cli

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_multi_string("gin_config", [], "Gin config file(s), parsed in order.")
    flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings, e.g. \"Training.epochs = 5\".")
    flags.DEFINE_string("model_dir", None, "Folder for checkpoints, logs and the configuration.")
    flags.DEFINE_string("data_root", None, "Root folder of the data (e.g. Meta-Dataset records, ORBIT frames).")
    flags.DEFINE_bool("resume_with_changes", False, "Resume although the optimisation settings changed "
                      "(Training.learning_rate, epochs, validation and logging settings; nothing else).")
    flags.DEFINE_bool("list_plugins", False, "List the registered learners, backbones, sources and evaluators, then exit.")
    flags.DEFINE_integer("verbose", 1, "0 silent, 1 Keras progress bar and a line per epoch, 2 a line per epoch.")
    flags.DEFINE_integer("cpu_devices", None, "Split this machine's CPU into N logical devices, so that "
                         "Training.strategy = 'mirrored' trains N replicas on a CPU-only machine.")


def list_plugins() -> str:
    from lite_tf import registry

    return ("Learners:  " + ", ".join(registry.list_learners()) + "\n"
            "Backbones: " + ", ".join(registry.list_backbones()) + "\n"
            "Sources:   " + ", ".join(registry.list_sources()) + "\n"
            "Evaluators: " + ", ".join(registry.list_evaluators()))


def main(argv) -> int:
    cli.no_arguments(argv)
    if FLAGS.list_plugins:
        print(list_plugins())
        return 0
    if FLAGS.cpu_devices is not None:
        from lite_tf import distribute

        distribute.local_cpu_devices(FLAGS.cpu_devices)  # before TensorFlow starts its runtime
    from lite_tf.experiment import train

    logs = train(FLAGS.model_dir, FLAGS.gin_config, FLAGS.gin_bindings, FLAGS.data_root, FLAGS.verbose,
                 FLAGS.resume_with_changes)
    if logs:
        print("Finished: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items())))
    return 0


def run():
    """Console-script entry point."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
