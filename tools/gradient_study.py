"""Gradient quality: LITE's estimate (each h, scaling, stratified, one subset per episode) vs the exact one.

Bias, relative variance and cosine to the exact gradient (mode='exact') over K draws on a few fixed
episodes, with time and memory per step, so h can be chosen before a long run (logic:
lite_tf/bench/gradient_study.py).

  python -m tools.gradient_study --output=study_out/gradients --plot=study_out/gradients.png
  python -m tools.gradient_study --support_size=20 --h=2,5,10,20 --draws=16 --image_size=16
"""
from __future__ import annotations

from absl import flags

from lite_tf import cli

FLAGS = flags.FLAGS


def define_flags():
    """Defines this tool's flags (only when it runs, so tools can be imported together)."""
    flags.DEFINE_string("learner", "protonets", "Registered learner name.")
    flags.DEFINE_string("backbone", "conv4", "Registered backbone name.")
    flags.DEFINE_integer("image_size", 32, "Image size in pixels.")
    flags.DEFINE_integer("support_size", 50, "Support images N per episode.")
    flags.DEFINE_integer("way", 5, "Classes per episode.")
    flags.DEFINE_integer("query_size", 20, "Query images per episode.")
    flags.DEFINE_integer("query_batch_size", 10, "Queries per batch (0: one batch; then no redraw rows).")
    flags.DEFINE_list("h", ["5", "10", "25", "50"], "LITE subset sizes.")
    flags.DEFINE_list("scalings", ["unbiased", "none", "loss"], "LITE gradient scalings.")
    flags.DEFINE_bool("stratified", True, "Add a stratified-subset row per h.")
    flags.DEFINE_bool("redraw_episode", True, "Add a one-subset-per-episode row per h (needs query batches).")
    flags.DEFINE_list("configs", None, "Explicit configurations instead (exact, full, lite:h=H[:scaling=S]...).")
    flags.DEFINE_integer("draws", 32, "Draws K of each estimate per episode.")
    flags.DEFINE_integer("episodes", 3, "Fixed episodes.")
    flags.DEFINE_integer("chunk_size", 25, "No-gradient / exact-mode chunk size.")
    flags.DEFINE_integer("seed", 0, "Initial weights and episodes.")
    flags.DEFINE_float("case_timeout_s", None, "Stop a configuration's process after this long.")
    flags.DEFINE_string("output", None, "Write X.json and the Markdown table X.md.")
    flags.DEFINE_string("plot", None, "Write relative variance and time vs h here (PNG; needs the 'plot' extra).")


def main(argv):
    cli.no_arguments(argv)
    from lite_tf.bench import gradient_study, studies

    settings = gradient_study.Settings(
        learner=FLAGS.learner, backbone=FLAGS.backbone, image_size=FLAGS.image_size,
        support_size=FLAGS.support_size, way=FLAGS.way, query_size=FLAGS.query_size,
        query_batch_size=FLAGS.query_batch_size or None, h=[int(h) for h in FLAGS.h], scalings=FLAGS.scalings,
        stratified=FLAGS.stratified, redraw_episode=FLAGS.redraw_episode, configs=FLAGS.configs,
        draws=FLAGS.draws, episodes=FLAGS.episodes, chunk_size=FLAGS.chunk_size, seed=FLAGS.seed,
        case_timeout_s=FLAGS.case_timeout_s)
    if FLAGS.plot:
        studies.pyplot()  # fail before the measurements, not after
    document = gradient_study.run(settings)
    print("\n" + gradient_study.markdown(document))
    if FLAGS.output:
        print("wrote " + ", ".join(gradient_study.write(FLAGS.output, document, FLAGS.plot)))
    return 0


def run():
    """Console-script entry point."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
