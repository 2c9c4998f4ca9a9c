"""The quickstart: generate the built-in data, meta-train ProtoNets with LITE at 224 px, evaluate.

  python -m tools.quickstart            (or the console script lite_tf_quickstart)

Everything runs offline on a CPU in under 10 minutes; rerunning reuses the data and, if training
finished, the trained model (delete --model_dir to train again). The size flags make a smaller
demo (tests use them); the defaults are the README's. The work is in lite_tf/quickstart.py.
"""
from __future__ import annotations

from absl import flags

from lite_tf import cli

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("data_dir", "demo_data", "Where the generated data goes (reused when complete).")
    flags.DEFINE_string("model_dir", "runs/quickstart", "Where the run goes.")
    flags.DEFINE_integer("episodes", 200, "Test episodes per generated source.")
    flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings for the training run.")
    flags.DEFINE_integer("image_size", 224, "Image size of the data and the model (binds IMAGE_SIZE).")
    flags.DEFINE_list("classes_per_split", ["20", "8", "8"], "Generated classes in TRAIN,VALID,TEST.")
    flags.DEFINE_integer("images_per_class", 30, "Generated images per class.")


def main(argv) -> int:
    cli.no_arguments(argv)
    from lite_tf.quickstart import run_quickstart

    results = run_quickstart(FLAGS.data_dir, FLAGS.model_dir, FLAGS.episodes, FLAGS.gin_bindings, FLAGS.image_size,
                             cli.integers(FLAGS.classes_per_split, "classes_per_split", "TRAIN,VALID,TEST"),
                             FLAGS.images_per_class, log=lambda line: print(line, flush=True))
    print("\nTest accuracy (5-way, chance 20%), mean and 95% confidence interval:\n")
    print(results["table"])
    print(f"\nDone in {results['seconds']:.0f} s. TensorBoard: {results['tensorboard']}")
    return 0


def run():
    """Console-script entry point."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
