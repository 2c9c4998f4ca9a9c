"""The budgeted-training study (console script lite_tf_training_study): exact, full and LITE (several
h, scalings, stratified) trained on one budget of episodes.

Every (configuration, seed) trains ProtoNets in its own process on the generated sources, then is
tested on the same fixed TEST episodes; the table gives accuracy with 95% intervals across seeds
and wall time (logic: lite_tf/bench/training_study.py).

  python -m tools.training_study --data_dir=study_out/data --output=study_out/training \
      --plot=study_out/training.png --episodes=300 --seeds=0,1,2
"""
from __future__ import annotations

from absl import flags

from lite_tf import cli

FLAGS = flags.FLAGS


def define_flags():
    """Defines this tool's flags (only when it runs, so tools can be imported together)."""
    from lite_tf.bench import training_study

    flags.DEFINE_string("data_dir", "study_out/data", "Where the generated sources are written (or found).")
    flags.DEFINE_list("configs", training_study.DEFAULT_CONFIGS,
                      "Configurations: full, exact, lite:h=H[:scaling=S][:sampling=stratified][:redraw=episode].")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (initial weights, training episodes, subset draws).")
    flags.DEFINE_list("sources", ["glyphs", "shapes", "textures"], "Generated sources, mixed.")
    flags.DEFINE_string("learner", "protonets", "Registered learner name.")
    flags.DEFINE_string("backbone", "conv4", "Registered backbone name.")
    flags.DEFINE_integer("image_size", 28, "Image size in pixels (the data is generated at it).")
    flags.DEFINE_integer("way", 5, "Classes per episode.")
    flags.DEFINE_integer("shots", 10, "Support images per class (N = way x shots).")
    flags.DEFINE_integer("queries", 10, "Query images per class.")
    flags.DEFINE_integer("episodes", 300, "Training episodes per run (the budget).")
    flags.DEFINE_integer("eval_episodes", 100, "Fixed TEST episodes each run is scored on.")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
    flags.DEFINE_integer("chunk_size", 25, "No-gradient / exact-mode chunk size.")
    flags.DEFINE_float("case_timeout_s", None, "Stop a run's process after this long (reported as timeout).")
    flags.DEFINE_string("output", None, "Write X.json and the Markdown table X.md.")
    flags.DEFINE_string("plot", None, "Write accuracy vs wall time here (PNG; needs the 'plot' extra).")


def main(argv):
    cli.no_arguments(argv)
    from lite_tf.bench import training_study

    settings = training_study.Settings(
        data_dir=FLAGS.data_dir, configs=FLAGS.configs, seeds=[int(seed) for seed in FLAGS.seeds],
        sources=FLAGS.sources, learner=FLAGS.learner, backbone=FLAGS.backbone, image_size=FLAGS.image_size,
        way=FLAGS.way, shots=FLAGS.shots, queries=FLAGS.queries, episodes=FLAGS.episodes,
        eval_episodes=FLAGS.eval_episodes, learning_rate=FLAGS.learning_rate, chunk_size=FLAGS.chunk_size,
        case_timeout_s=FLAGS.case_timeout_s)
    if FLAGS.plot:
        from lite_tf.bench import studies

        studies.pyplot()  # fail before hours of training, not after
    document = training_study.run(settings)
    print("\n" + training_study.markdown(document))
    if FLAGS.output:
        print("wrote " + ", ".join(training_study.write(FLAGS.output, document, FLAGS.plot)))
    return 0


def run():
    """Console-script entry point."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
