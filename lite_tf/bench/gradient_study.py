"""The gradient-quality study: LITE's estimate against the exact gradient, before any long run.

For one model configuration (learner, backbone, image size, N, way, queries) and a few fixed
synthetic episodes, each study configuration (``lite_tf.bench.studies.parse_config`` strings: LITE
at each h and scaling, stratified subsets, one subset per episode) runs in its own process
(``lite_tf.bench.runner``): it computes the exact gradient g of every episode (``mode='exact'``),
then K draws g_1..g_K of its own estimate, and reports, averaged over the episodes,
  bias               ||mean_k g_k - g|| / ||g||  (for an unbiased estimate this shrinks like
                     sqrt(relative variance / K): ``bias_noise`` is that floor),
  relative variance  trace of the covariance of g_k over ||g||^2,
  cosine             mean over k of cos(g_k, g),
and the median seconds per gradient step and the peak memory of the draws. Initial weights and
episodes depend only on ``seed``, so every process sees the same model and episodes. Rows follow
the benchmark schema (case 'gradient', part 'gradient').
"""
from __future__ import annotations

import dataclasses
import datetime
import statistics
import time
from typing import Callable, List, Optional

import numpy as np

from lite_tf.bench import results, runner, studies
from lite_tf.bench.episodes import synthetic_episode
from lite_tf.errors import ConfigError, DataError

TARGET = "lite_tf.bench.gradient_study:measure"
SCALINGS = ("unbiased", "none", "loss")


@dataclasses.dataclass
class Settings:
    """What to compare. ``configs`` None: every h with every scaling, then stratified and redraw rows."""
    learner: str = "protonets"
    backbone: str = "conv4"
    image_size: int = 32
    support_size: int = 50
    way: int = 5
    query_size: int = 20
    query_batch_size: Optional[int] = 10
    h: List[int] = dataclasses.field(default_factory=lambda: [5, 10, 25, 50])
    scalings: List[str] = dataclasses.field(default_factory=lambda: list(SCALINGS))
    stratified: bool = True
    redraw_episode: bool = True
    configs: Optional[List[str]] = None
    draws: int = 32
    episodes: int = 3
    chunk_size: int = 25
    seed: int = 0
    case_timeout_s: Optional[float] = None


def configurations(settings: Settings) -> List[str]:
    """The study's configuration strings: 'exact' (reference timing) first, then the LITE rows."""
    if settings.configs is not None:
        return list(settings.configs)
    configs = ["exact"]
    for h in settings.h:
        configs += [f"lite:h={h}:scaling={scaling}" for scaling in settings.scalings]
        if settings.stratified:
            configs.append(f"lite:h={h}:sampling=stratified")
        if settings.redraw_episode and settings.query_batch_size is not None:
            configs.append(f"lite:h={h}:redraw=episode")
    return configs


def validate(settings: Settings) -> None:
    for text in configurations(settings):
        studies.parse_config(text)
    for name in ("support_size", "way", "query_size", "draws", "episodes", "image_size", "chunk_size"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"gradient study: {name} must be >= 1; got {getattr(settings, name)}.")
    if settings.way > settings.support_size:
        raise ConfigError(f"gradient study: way ({settings.way}) exceeds the support size ({settings.support_size}).")
    if settings.draws < 2:
        raise ConfigError(f"gradient study: draws must be >= 2 (a variance needs two); got {settings.draws}.")


def specs(settings: Settings) -> list:
    common = {key: getattr(settings, key) for key in (
        "learner", "backbone", "image_size", "support_size", "way", "query_size", "query_batch_size", "episodes",
        "chunk_size", "seed")}
    return [{"case": "gradient", "part": "gradient", "target": TARGET, "config": text,
             "lite": studies.parse_config(text), "draws": 1 if text in ("exact", "full") else settings.draws,
             **common} for text in configurations(settings)]


def gradient_statistics(draws: np.ndarray, exact: np.ndarray) -> dict:
    """Bias, relative variance, cosine (and the bias a zero-mean error leaves) of K draws [K, P] vs [P]."""
    draws, exact = np.asarray(draws, np.float64), np.asarray(exact, np.float64)
    squared_norm = float(exact @ exact)
    if squared_norm == 0:
        raise DataError("gradient_statistics: the exact gradient is zero; nothing to compare against.")
    mean = draws.mean(axis=0)
    trace = float(draws.var(axis=0, ddof=1).sum()) if len(draws) > 1 else 0.0
    cosines = draws @ exact / (np.linalg.norm(draws, axis=1) * np.sqrt(squared_norm) + 1e-30)
    return {"bias": float(np.linalg.norm(mean - exact) / np.sqrt(squared_norm)),
            "relative_variance": trace / squared_norm, "cosine": float(cosines.mean()),
            "bias_noise": float(np.sqrt(trace / squared_norm / len(draws)))}


def _episodes(spec: dict) -> list:
    rng = np.random.default_rng(spec["seed"])
    templates = rng.uniform(-1, 1, (spec["way"] * 2,) + (spec["image_size"],) * 2 + (3,))
    return [synthetic_episode(spec["way"], spec["support_size"], spec["query_size"], spec["image_size"], rng=rng,
                              templates=templates, noise=0.5) for _ in range(spec["episodes"])]


def measure(spec: dict) -> dict:
    """Child side: exact gradients of the fixed episodes, then ``draws`` draws of the configuration's."""
    import keras
    import tensorflow as tf

    from lite_tf import EpisodicModel, LiteConfig, memory, registry

    registry.load_plugins()
    keras.utils.set_random_seed(spec["seed"])
    learner = registry.get_learner(spec["learner"])(backbone=spec["backbone"])
    model = EpisodicModel(learner, spec["image_size"], lite=LiteConfig(mode="exact", chunk_size=spec["chunk_size"]),
                          query_batch_size=spec["query_batch_size"], seed=spec["seed"])
    episodes = [{key: tf.convert_to_tensor(value) for key, value in episode.items()} for episode in _episodes(spec)]

    def flat(gradients) -> np.ndarray:
        return np.concatenate([np.ravel(g.numpy()) for g in gradients]).astype(np.float64)

    exact_step = tf.function(lambda data: model.train_episode(data).gradients)  # traced with the exact config
    exact = [flat(exact_step(episode)) for episode in episodes]
    model.lite_config = LiteConfig(chunk_size=spec["chunk_size"], **spec["lite"])
    step = tf.function(lambda data: model.train_episode(data).gradients)
    flat(step(episodes[0]))  # traces: not timed
    meter = memory.PeakMeter()
    times, rows = [], []
    for episode, reference in zip(episodes, exact):
        draws = []
        for _ in range(spec["draws"]):
            started = time.perf_counter()
            draws.append(flat(step(episode)))
            times.append(time.perf_counter() - started)
        rows.append(gradient_statistics(np.stack(draws), reference))
    averaged = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
    return {**meter.read(), **averaged, "step_s": statistics.median(times),
            "h": spec["lite"].get("h"), "mode": spec["lite"]["mode"]}


def run(settings: Settings, log: Callable = print) -> dict:
    """Every configuration in its own process; returns the results document."""
    from lite_tf.bench import harness

    validate(settings)
    rows = []
    for spec in specs(settings):
        row = runner.run_in_child(spec["target"], spec, settings.case_timeout_s)
        rows.append(row)
        result = (f"bias {row['bias']:.4f}, relative variance {row['relative_variance']:.4f}, cosine "
                  f"{row['cosine']:.4f}, {row['step_s'] * 1000:.1f} ms/step" if row["status"] == "ok"
                  else f"{row['status']}: {row['error']}")
        log(f"{spec['config']}: {result}")
    return {"schema": results.SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "machine": harness.machine(), "settings": dataclasses.asdict(settings), "rows": rows, "summary": []}


def markdown(document: dict) -> str:
    settings = document["settings"]
    batches = ("all queries in one batch" if settings["query_batch_size"] is None
               else f"query batches of {settings['query_batch_size']}")
    lines = [f"{settings['learner']} ({settings['backbone']}), {settings['image_size']} px, N={settings['support_size']}, "
             f"{settings['way']}-way, {settings['query_size']} queries ({batches}); {settings['episodes']} fixed "
             f"episodes, K={settings['draws']} draws per configuration. Bias and relative variance are relative to "
             f"the exact gradient (mode='exact'); 'bias floor' is sqrt(relative variance / K), the bias a "
             f"zero-mean error leaves after K draws.", "",
             "| configuration | bias | bias floor | relative variance | cosine | ms/step | host peak (GiB) | status |",
             "|---|---|---|---|---|---|---|---|"]
    for row in document["rows"]:
        if row["status"] != "ok":
            lines.append(f"| {row['config']} | - | - | - | - | - | - | {row['status']}: {row['error']} |")
            continue
        lines.append(f"| {row['config']} | {row['bias']:.4f} | {row['bias_noise']:.4f} | "
                     f"{row['relative_variance']:.4f} | {row['cosine']:.4f} | {1000 * row['step_s']:.1f} | "
                     f"{results.peak_gib(row):.3f} | ok |")
    return "\n".join(lines) + "\n"


def _series(rows: list) -> dict:
    """LITE rows by variant (scaling / stratified / redraw), each sorted by h."""
    series: dict = {}
    for row in rows:
        if row["status"] != "ok" or row["mode"] != "lite":
            continue
        lite = row["lite"]
        if lite.get("sampling") == "stratified":
            name = "stratified"
        elif lite.get("redraw") == "episode":
            name = "one H per episode"
        else:
            name = f"scaling={lite.get('gradient_scaling', 'unbiased')}"
        series.setdefault(name, []).append(row)
    return {name: sorted(members, key=lambda row: row["h"]) for name, members in series.items()}


def plot(document: dict, path: str) -> None:
    """Relative variance (log scale) and time per step against h; the exact mode's time as a line."""
    plt = studies.pyplot()
    figure, (variance_axis, time_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for name, members in _series(document["rows"]).items():
        hs = [row["h"] for row in members]
        noisy = [row for row in members if row["relative_variance"] > 0]  # h >= N is exact: no point on a log scale
        variance_axis.plot([row["h"] for row in noisy], [row["relative_variance"] for row in noisy], "o-", label=name)
        time_axis.plot(hs, [1000 * row["step_s"] for row in members], "o-", label=name)
    for row in document["rows"]:
        if row["status"] == "ok" and row["mode"] in ("exact", "full"):
            time_axis.axhline(1000 * row["step_s"], linestyle="--", color="gray", label=row["mode"])
    settings = document["settings"]
    variance_axis.set_yscale("log")
    variance_axis.set_xlabel(f"h (h >= N={settings['support_size']}: exact, zero variance)")
    variance_axis.set_ylabel("relative variance of the gradient")
    time_axis.set_xlabel("h")
    time_axis.set_ylabel("ms per gradient step")
    for axis in (variance_axis, time_axis):
        axis.legend(fontsize=7)
    figure.suptitle(f"{settings['learner']} {settings['backbone']}, {settings['image_size']} px, N={settings['support_size']}")
    studies.save_figure(figure, path)
    plt.close(figure)


def write(output: str, document: dict, plot_path: Optional[str] = None) -> list:
    """Validates the document, writes X.json and X.md (and the plot); returns the paths written."""
    return studies.write_study(output, document, markdown, plot, plot_path)
