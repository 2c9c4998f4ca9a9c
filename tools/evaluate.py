"""Evaluate a trained model on test episodes: mean accuracy with a 95% confidence interval per dataset.

  python -m tools.evaluate --model_dir=runs/quickstart --data_root=demo_data

Rebuilds the experiment from <model_dir>/experiment.gin, loads best.weights.h5 (or the latest
checkpoint with --checkpoint=latest), and evaluates --episodes episodes of each dataset's test split.
Prints a Markdown table and writes <model_dir>/eval_<split>.json and .md (or --output).
"""
from __future__ import annotations

import os
import sys
import time

from absl import app, flags

def define_flags():
    """Defines this tool's flags (only when it runs, so tools can be imported together)."""
    flags.DEFINE_string("model_dir", None, "A training run's folder (holds experiment.gin).")
    flags.DEFINE_string("data_root", None, "Root folder of the data.")
    flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings applied after the run's experiment.gin.")
    flags.DEFINE_list("datasets", None, "Datasets to evaluate separately (default: Training.eval_datasets, else all).")
    flags.DEFINE_integer("episodes", 600, "Test episodes per dataset.")
    flags.DEFINE_string("split", None, "Split to evaluate (default: Training.test_split).")
    flags.DEFINE_string("checkpoint", "best", "'best' (best validation accuracy), 'latest', or a weights file.")
    flags.DEFINE_integer("seed", 12345, "Seed of the test episodes.")
    flags.DEFINE_string("output", None, "Output path without extension (default <model_dir>/eval_<split>).")


FLAGS = flags.FLAGS


def load_weights(model, model_dir: str, which: str) -> str:
    """Loads the requested weights into ``model``; returns a description of what was loaded."""
    import tensorflow as tf

    from tools.experiment import ExperimentError

    if which == "best":
        path = os.path.join(model_dir, "best.weights.h5")
        if not os.path.exists(path):
            raise ExperimentError(f"No best.weights.h5 in {model_dir!r} (no validation finished yet); "
                                  "use --checkpoint=latest.")
        model.load_weights(path)
        return path
    if which == "latest":
        latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
        if latest is None:
            raise ExperimentError(f"No checkpoint in {model_dir}/checkpoints.")
        tf.train.Checkpoint(model=model).restore(latest).expect_partial()
        return latest
    if not os.path.exists(which):
        raise ExperimentError(f"Weights file {which!r} does not exist.")
    model.load_weights(which)
    return which


def episode_accuracies(model, dataset, episodes: int) -> list:
    """Accuracy of each of ``episodes`` episodes, support set mapped in inference mode."""
    import tensorflow as tf
    from keras.utils import Progbar

    from lite_tf.episode import episode_signature

    step = tf.function(lambda episode: model.evaluate_episode(episode)[1],
                       input_signature=[episode_signature(model.image_size, dataset.element_spec["support_images"].dtype)])
    # A live bar on a terminal; one line at the end in logs.
    accuracies, progress = [], Progbar(episodes, unit_name="episode", verbose=1 if sys.stdout.isatty() else 2)
    for episode in dataset.take(episodes):
        accuracies.append(float(step(episode)))
        progress.add(1, values=[("accuracy", accuracies[-1])])
    if len(accuracies) < episodes:
        raise RuntimeError(f"The test data ran out after {len(accuracies)} of {episodes} episodes.")
    return accuracies


def evaluate(model_dir: str, data_root=None, bindings=(), datasets=None, episodes: int = 600, split=None,
             checkpoint: str = "best", seed: int = 12345, output=None) -> dict:
    from lite_tf import atomic
    from lite_tf.eval.confidence import mean_confidence_interval
    from tools import experiment

    config_path = os.path.join(model_dir, experiment.EXPERIMENT_FILE)
    if not os.path.exists(config_path):
        raise experiment.ExperimentError(f"{model_dir!r} has no {experiment.EXPERIMENT_FILE}: not a training run.")
    experiment.parse_gin([config_path], bindings)
    model, training = experiment.build()
    weights = load_weights(model, model_dir, checkpoint)
    split = split or training.test_split
    names = datasets or training.eval_datasets
    if names is None and data_root and "datasets" in experiment.inspect.signature(training.dataset_fn).parameters:
        names = sorted(e.name for e in os.scandir(data_root) if os.path.isfile(os.path.join(e.path, "dataset_spec.json")))
    results = {"model_dir": model_dir, "weights": weights, "split": split, "episodes": episodes, "datasets": {}}
    for name in names or [None]:
        started = time.time()
        data = training.dataset(data_root, split, seed=seed, datasets=[name] if name else None)
        accuracies = episode_accuracies(model, data, episodes)
        mean, half_width = mean_confidence_interval(accuracies)
        results["datasets"][name or "all"] = {"accuracy": mean, "ci95": half_width, "episodes": len(accuracies),
                                              "seconds": time.time() - started}
    table = ["| dataset | accuracy (%) | 95% CI (+-) | episodes |", "|---|---|---|---|"]
    for name, r in results["datasets"].items():
        table.append(f"| {name} | {100 * r['accuracy']:.2f} | {100 * r['ci95']:.2f} | {r['episodes']} |")
    results["table"] = "\n".join(table)
    output = output or os.path.join(model_dir, f"eval_{split}")
    atomic.write_json(output + ".json", results, indent=1)
    atomic.write_text(output + ".md", f"Evaluation of {weights} on the {split} split ({episodes} episodes per "
                      "dataset)\n\n" + results["table"] + "\n")
    return results


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required.")
    from tools.experiment import ExperimentError

    try:
        results = evaluate(FLAGS.model_dir, FLAGS.data_root, FLAGS.gin_bindings, FLAGS.datasets, FLAGS.episodes,
                           FLAGS.split, FLAGS.checkpoint, FLAGS.seed, FLAGS.output)
    except (ExperimentError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(results["table"])
    return 0


def run():
    """Console-script entry point."""
    define_flags()
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
