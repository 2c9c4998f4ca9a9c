"""The budgeted training study: the same meta-training run under several support mappings and seeds.

Each (configuration, seed) is one fresh process (``lite_tf.bench.runner``): ProtoNets on the
generated Meta-Dataset-format sources (lite_tf/data/synthetic), a fixed budget of training
episodes (one Adam step each), then accuracy on a fixed set of TEST-split episodes, the same for
every row. The seed sets the initial weights, the training episodes and the subset draws, and is
shared across configurations, so rows with one seed differ only in how the support set is mapped.
Rows follow the benchmark schema (case 'training', part 'train'); groups report the mean test
accuracy with a Student-t 95% interval across seeds and the mean wall time of training.
"""
from __future__ import annotations

import dataclasses
import datetime
import time
from typing import Callable, List, Optional

from lite_tf.bench import results, runner, studies
from lite_tf.errors import ConfigError

TARGET = "lite_tf.bench.training_study:train"
DEFAULT_CONFIGS = ["full", "exact", "lite:h=10", "lite:h=10:scaling=none", "lite:h=10:scaling=loss",
                   "lite:h=10:sampling=stratified", "lite:h=25"]


@dataclasses.dataclass
class Settings:
    """One study: every configuration trained with every seed for ``episodes`` episodes."""
    data_dir: str
    configs: List[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_CONFIGS))
    seeds: List[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    sources: List[str] = dataclasses.field(default_factory=lambda: ["glyphs", "shapes", "textures"])
    learner: str = "protonets"
    backbone: str = "conv4"
    image_size: int = 28
    way: int = 5
    shots: int = 10
    queries: int = 10
    episodes: int = 300
    eval_episodes: int = 100
    learning_rate: float = 1e-3
    chunk_size: int = 25
    classes_per_split: List[int] = dataclasses.field(default_factory=lambda: [20, 8, 8])
    images_per_class: int = 30
    case_timeout_s: Optional[float] = None


def split_budget(text: str, episodes: int) -> tuple:
    """``'lite:h=10@1600'`` -> ('lite:h=10', 1600): a configuration may carry its own episode budget."""
    config, sep, budget = text.partition("@")
    if not sep:
        return config, episodes
    if not budget.isdigit() or int(budget) < 1:
        raise ConfigError(f"Study configuration {text!r}: the budget after '@' must be a positive episode count.")
    return config, int(budget)


def validate(settings: Settings) -> None:
    """One-line ConfigErrors before any process starts."""
    for text in settings.configs:
        studies.parse_config(split_budget(text, settings.episodes)[0])
    if not settings.configs or not settings.seeds:
        raise ConfigError("training study: needs at least one configuration and one seed.")
    for name in ("episodes", "eval_episodes", "image_size", "way", "shots", "queries"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"training study: {name} must be >= 1; got {getattr(settings, name)}.")
    if settings.shots + settings.queries > settings.images_per_class:
        raise ConfigError(f"training study: shots + queries ({settings.shots + settings.queries}) exceed "
                          f"images_per_class ({settings.images_per_class}).")


def prepare_data(settings: Settings, log: Callable = print) -> List[str]:
    """Generates (or finds, already generated with these settings) one record set per source."""
    from lite_tf.data.synthetic import procedural

    folders = []
    for source in settings.sources:
        report = procedural.write_synthetic_dataset(
            settings.data_dir, source, image_size=settings.image_size, classes_per_split=settings.classes_per_split,
            images_per_class=settings.images_per_class, progress=False)
        folders.append(report.dataset_dir)
    log(f"data ready in {settings.data_dir} ({', '.join(settings.sources)})")
    return folders


def specs(settings: Settings, folders: List[str]) -> list:
    """One spec per (seed, configuration): seeds outermost, so a cut-short run holds whole comparisons."""
    planned = []
    for seed in settings.seeds:
        for text in settings.configs:
            config, episodes = split_budget(text, settings.episodes)
            planned.append({
                "case": "training", "part": "train", "target": TARGET, "config": text,
                "lite": studies.parse_config(config), "seed": int(seed), "folders": list(folders),
                "learner": settings.learner, "backbone": settings.backbone, "image_size": settings.image_size,
                "way": settings.way, "shots": settings.shots, "queries": settings.queries, "episodes": episodes,
                "eval_episodes": settings.eval_episodes, "learning_rate": settings.learning_rate,
                "chunk_size": settings.chunk_size})
    return planned


def train(spec: dict) -> dict:
    """Child side: trains one configuration with one seed; returns the row's measurements."""
    import keras
    import tensorflow as tf

    from lite_tf import EpisodicModel, LiteConfig, memory, optimizers, registry
    from lite_tf.data.metadataset.pipeline import make_episode_dataset

    registry.load_plugins()
    keras.utils.set_random_seed(spec["seed"])
    kwargs = dict(image_size=spec["image_size"], image_dtype=tf.uint8,
                  sampler_kwargs=dict(num_ways=spec["way"], num_support=spec["shots"], num_query=spec["queries"]))
    learner = registry.get_learner(spec["learner"])(backbone=spec["backbone"])
    lite = LiteConfig(chunk_size=spec["chunk_size"], **spec["lite"])
    model = EpisodicModel(learner, spec["image_size"], lite=lite, seed=spec["seed"])
    model.compile(optimizers.Adam(spec["learning_rate"]))
    training = make_episode_dataset(spec["folders"], "TRAIN", seed=1000 + spec["seed"], **kwargs)
    testing = make_episode_dataset(spec["folders"], "TEST", seed=12345, num_episodes=spec["eval_episodes"], **kwargs)
    meter = memory.PeakMeter()
    started = time.perf_counter()
    history = model.fit(training, steps_per_epoch=spec["episodes"], epochs=1, verbose=0)
    train_s = time.perf_counter() - started
    peaks = meter.read()
    test = model.evaluate(testing, verbose=0, return_dict=True)
    return {**peaks, "train_s": train_s, "step_s": train_s / spec["episodes"],
            "final_train_accuracy": float(history.history["accuracy"][-1]), "test_accuracy": float(test["accuracy"]),
            "test_loss": float(test["loss"])}


def groups(rows: list) -> list:
    """Per configuration (in first-seen order): seeds, mean test accuracy and its 95% interval, wall time."""
    by_config: dict = {}
    for row in rows:
        by_config.setdefault(row["config"], []).append(row)
    summary = []
    for config, members in by_config.items():
        done = [row for row in members if row["status"] == "ok"]
        entry = {"config": config, "seeds": len(done), "failed": len(members) - len(done),
                 "episodes": members[0].get("episodes")}
        if done:
            mean, half = studies.seed_interval([row["test_accuracy"] for row in done])
            entry.update(accuracy=mean, interval=half, train_s=sum(row["train_s"] for row in done) / len(done),
                         step_s=sum(row["step_s"] for row in done) / len(done),
                         peak_gib=max(results.peak_gib(row) for row in done))
        summary.append(entry)
    return summary


def _percent(entry: dict) -> str:
    if "accuracy" not in entry:
        return "-"
    half = "" if entry["interval"] is None else f" ± {100 * entry['interval']:.1f}"
    return f"{100 * entry['accuracy']:.1f}{half}"


def markdown(document: dict) -> str:
    """The per-configuration table (accuracy ± 95% interval across seeds), then every row."""
    settings = document["settings"]
    lines = [f"ProtoNets ({settings['backbone']}), {settings['image_size']} px, {settings['way']}-way "
             f"{settings['shots']}-shot {settings['queries']}-query (N={settings['way'] * settings['shots']}), "
             f"{settings['episodes']} training episodes (a configuration's own after '@'), test accuracy over {settings['eval_episodes']} fixed TEST "
             f"episodes; ± is the 95% Student-t interval across seeds.", "",
             "| configuration | seeds | test accuracy (%) | training wall time (s) | s/episode | peak memory (GiB) |",
             "|---|---|---|---|---|---|"]
    for entry in document["groups"]:
        timing = ("-", "-", "-") if "accuracy" not in entry else (
            f"{entry['train_s']:.0f}", f"{entry['step_s']:.3f}", f"{entry['peak_gib']:.2f}")
        failed = f" ({entry['failed']} failed)" if entry["failed"] else ""
        lines.append(f"| {entry['config']} | {entry['seeds']}{failed} | {_percent(entry)} | " + " | ".join(timing) + " |")
    failures = [row for row in document["rows"] if row["status"] != "ok"]
    lines += [""] + [f"- {row['config']} seed {row['seed']}: {row['status']}: {row['error']}" for row in failures]
    return "\n".join(lines).rstrip() + "\n"


def plot(document: dict, path: str) -> None:
    """Test accuracy (mean, 95% interval across seeds) against training wall time, one point per configuration."""
    plt = studies.pyplot()
    figure, axis = plt.subplots(figsize=(6.4, 4.4))
    for entry in document["groups"]:
        if "accuracy" not in entry:
            continue
        error = None if entry["interval"] is None else 100 * entry["interval"]
        axis.errorbar(entry["train_s"], 100 * entry["accuracy"], yerr=error, fmt="o", capsize=3, label=entry["config"])
    axis.set_xlabel("training wall time (s)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title(f"{document['settings']['episodes']} episodes per run unless marked @episodes")
    axis.legend(fontsize=7)
    studies.save_figure(figure, path)
    plt.close(figure)


def run(settings: Settings, log: Callable = print) -> dict:
    """Generates the data, trains every (seed, configuration) in its own process, returns the document."""
    from lite_tf.bench import harness

    validate(settings)
    folders = prepare_data(settings, log)
    rows = []
    for spec in specs(settings, folders):
        row = runner.run_in_child(spec["target"], spec, settings.case_timeout_s)
        row.pop("folders", None)  # machine paths; settings keep the data folder
        rows.append(row)
        result = (f"test accuracy {row['test_accuracy']:.3f}, {row['train_s']:.0f} s training" if row["status"] == "ok"
                  else f"{row['status']}: {row['error']}")
        log(f"{spec['config']} seed {spec['seed']}: {result}")
    document = {"schema": results.SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "machine": harness.machine(), "settings": dataclasses.asdict(settings), "rows": rows}
    document["groups"] = groups(rows)
    document["summary"] = [f"{entry['config']}: {_percent(entry)} %" for entry in document["groups"]]
    return document


def write(output: str, document: dict, plot_path: Optional[str] = None) -> list:
    """Validates the document, writes X.json and X.md (and the plot); returns the paths written."""
    return studies.write_study(output, document, markdown, plot, plot_path)

