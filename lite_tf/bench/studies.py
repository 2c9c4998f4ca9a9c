"""What the two studies share: how a configuration is named, seed intervals, and the optional plot.

A study configuration is a string: ``full``, ``exact``, or ``lite:h=10`` with optional
``:scaling=unbiased|none|loss``, ``:sampling=uniform|stratified`` and ``:redraw=query_batch|episode``
(e.g. ``lite:h=10:sampling=stratified``). It parses into LiteConfig keyword arguments, so a
study accepts exactly what LiteConfig accepts.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

from lite_tf.errors import ConfigError, DataError

_KEYS = {"h": "h", "scaling": "gradient_scaling", "sampling": "sampling", "redraw": "redraw"}


def parse_config(text: str) -> dict:
    """``'lite:h=10:scaling=none'`` -> {'mode': 'lite', 'h': 10, 'gradient_scaling': 'none'}, checked."""
    from lite_tf.lite import LiteConfig

    mode, *options = text.strip().split(":")
    config = {"mode": mode}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in _KEYS:
            raise ConfigError(f"Study configuration {text!r}: option {option!r} is not key=value with key one of "
                              f"{sorted(_KEYS)}.")
        config[_KEYS[key]] = int(value) if key == "h" and value.isdigit() else value
    if mode == "lite" and "h" not in config:
        raise ConfigError(f"Study configuration {text!r}: lite needs h=<subset size>.")
    if mode != "lite" and len(config) > 1:
        raise ConfigError(f"Study configuration {text!r}: options apply to mode 'lite' only.")
    try:
        LiteConfig(**config)
    except ValueError as error:
        raise ConfigError(f"Study configuration {text!r}: {error}") from None
    return config


def t_quantile(probability: float, dof: int) -> float:
    """Student's t quantile (e.g. 0.975, dof 2 -> 4.303), by bisection on a Simpson-integrated CDF."""
    if dof < 1 or not 0.5 <= probability < 1:
        raise DataError(f"t_quantile needs dof >= 1 and 0.5 <= probability < 1; got {dof}, {probability}.")
    log_norm = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)

    def cdf(t: float) -> float:  # 0.5 + integral of the density over [0, t]; substitution keeps the tail smooth
        steps = 2000
        width = t / steps
        density = lambda x: math.exp(log_norm - (dof + 1) / 2 * math.log1p(x * x / dof))  # noqa: E731
        total = density(0) + density(t) + sum((4 if i % 2 else 2) * density(i * width) for i in range(1, steps))
        return 0.5 + total * width / 3

    low, high = 0.0, 1.0
    while cdf(high) < probability:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < probability else (low, middle)
    return (low + high) / 2


def seed_interval(values: Sequence[float], confidence: float = 0.95) -> tuple:
    """(mean, half-width) of the Student-t interval across seeds; half-width None for one value."""
    values = [float(value) for value in values]
    if not values:
        raise DataError("seed_interval needs at least one value.")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, None
    variance = sum((value - mean) ** 2 for value in values) / (len(values) - 1)
    return mean, t_quantile(0.5 + confidence / 2, len(values) - 1) * math.sqrt(variance / len(values))


def pyplot():
    """matplotlib.pyplot with the Agg backend, or a ConfigError saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("Plots need matplotlib, an optional extra: pip install 'lite_tf[plot]' "
                          "(or pip install matplotlib), or leave the plot flag unset.") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str) -> None:
    """Saves a figure atomically (a crash leaves no half-written PNG)."""
    from lite_tf import atomic

    with atomic.atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")


def write_study(output: str, document: dict, markdown: Callable[[dict], str], plot: Callable[[dict, str], None],
                plot_path: Optional[str] = None) -> list:
    """Validates a study's document, writes X.json and X.md (and the plot); returns the paths written."""
    from lite_tf import atomic
    from lite_tf.bench import results

    if plot_path:
        pyplot()  # a missing matplotlib is said before anything is written
    results.validate(document)
    json_path, markdown_path = results.output_paths(output)
    atomic.write_json(json_path, document, indent=1)
    atomic.write_text(markdown_path, markdown(document))
    paths = [json_path, markdown_path]
    if plot_path:
        plot(document, plot_path)
        paths.append(plot_path)
    return paths
