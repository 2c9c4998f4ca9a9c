"""The quickstart: generate the built-in data, meta-train ProtoNets with LITE at 224 px, evaluate.

  python -m tools.quickstart            (or the console script lite_tf_quickstart)

Everything runs offline on a CPU in under 10 minutes; rerunning reuses the data and, if training
finished, the trained model (delete --model_dir to train again).
"""
from __future__ import annotations

import os
import sys
import time

from absl import app, flags

def define_flags():
    """Defines this tool's flags (only when it runs, so tools can be imported together)."""
    flags.DEFINE_string("data_dir", "demo_data", "Where the generated data goes (reused when complete).")
    flags.DEFINE_string("model_dir", "runs/quickstart", "Where the run goes.")
    flags.DEFINE_integer("episodes", 200, "Test episodes per generated source.")
    flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings for the training run.")


FLAGS = flags.FLAGS

CONFIG = "gin/quickstart.gin"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tools.evaluate import evaluate
    from tools.experiment import ExperimentError
    from tools.make_demo_data import make_demo_data
    from tools.train import train

    started = time.time()
    print(f"[1/3] Generating the built-in data in {FLAGS.data_dir} (224 px, 3 sources)...", flush=True)
    make_demo_data(FLAGS.data_dir, ["glyphs", "shapes", "textures"], image_size=224, classes_per_split=[20, 8, 8],
                   images_per_class=30, seed=0, progress=False)
    print(f"[2/3] Meta-training ProtoNets with LITE (gin: {CONFIG}) into {FLAGS.model_dir}...", flush=True)
    try:
        train(FLAGS.model_dir, [CONFIG], FLAGS.gin_bindings, FLAGS.data_dir, verbose=2)
        print(f"[3/3] Evaluating the best model on {FLAGS.episodes} test episodes per source...", flush=True)
        results = evaluate(FLAGS.model_dir, FLAGS.data_dir, episodes=FLAGS.episodes)
    except (ExperimentError, FloatingPointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\nTest accuracy (5-way, chance 20%), mean and 95% confidence interval:\n")
    print(results["table"])
    print(f"\nDone in {time.time() - started:.0f} s. TensorBoard: tensorboard --logdir {os.path.join(FLAGS.model_dir, 'logs')}")
    return 0


def run():
    """Console-script entry point."""
    define_flags()
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
