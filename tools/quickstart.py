"""The quickstart: generate the built-in data, meta-train ProtoNets with LITE at 224 px, evaluate.

  python -m tools.quickstart            (or the console script lite_tf_quickstart)

Everything runs offline on a CPU in under 10 minutes; rerunning reuses the data and, if training
finished, the trained model (delete --model_dir to train again). The size flags make a smaller
demo (tests use them); the defaults are the README's.
"""
from __future__ import annotations

import os
import time

from absl import flags

import tools  # noqa: F401  (quiet TensorFlow start-up, before TensorFlow is imported)
from lite_tf import cli

FLAGS = flags.FLAGS
CONFIG = "gin/quickstart.gin"
SOURCES = ["glyphs", "shapes", "textures"]


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
    from lite_tf.errors import ConfigError
    from lite_tf.experiment import evaluate, train
    from tools.make_demo_data import make_demo_data

    try:
        classes = [int(c) for c in FLAGS.classes_per_split]
    except ValueError:
        raise ConfigError(f"--classes_per_split must be integers TRAIN,VALID,TEST; got "
                          f"{','.join(FLAGS.classes_per_split)}.") from None
    started = time.time()
    size = FLAGS.image_size
    print(f"[1/3] Generating the built-in data in {FLAGS.data_dir} ({size} px, {len(SOURCES)} sources)...", flush=True)
    make_demo_data(FLAGS.data_dir, SOURCES, image_size=size, classes_per_split=classes,
                   images_per_class=FLAGS.images_per_class, seed=0, progress=False)
    print(f"[2/3] Meta-training ProtoNets with LITE (gin: {CONFIG}) into {FLAGS.model_dir}...", flush=True)
    train(FLAGS.model_dir, [CONFIG], [f"IMAGE_SIZE = {size}"] + FLAGS.gin_bindings, FLAGS.data_dir, verbose=2)
    print(f"[3/3] Evaluating the best model on {FLAGS.episodes} test episodes per source...", flush=True)
    results = evaluate(FLAGS.model_dir, FLAGS.data_dir, episodes=FLAGS.episodes)
    print("\nTest accuracy (5-way, chance 20%), mean and 95% confidence interval:\n")
    print(results["table"])
    print(f"\nDone in {time.time() - started:.0f} s. TensorBoard: tensorboard --logdir "
          f"{os.path.join(FLAGS.model_dir, 'logs')}")
    return 0


def run():
    """Console-script entry point."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
