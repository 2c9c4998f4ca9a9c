"""Mean with a 95% confidence interval, as few-shot papers report results.

The half width is 1.96 * std / sqrt(n) with the population standard deviation (ddof=0), the
convention of the Meta-Dataset, LITE and ORBIT reference code.
"""
from __future__ import annotations

from typing import Iterable, Tuple

import numpy as np

from lite_tf.errors import DataError

Z_95 = 1.96


def mean_confidence_interval(values: Iterable[float], z: float = Z_95) -> Tuple[float, float]:
    """(mean, half width) of ``values``; the interval is mean +- half width.

    One value gives a half width of 0.0. An empty input raises ValueError (a mean of nothing is a
    bug upstream, not a number to report).
    """
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    array = array.reshape(-1)
    if array.size == 0:
        raise DataError("mean_confidence_interval needs at least one value; got none.")
    if not np.all(np.isfinite(array)):
        raise DataError(f"mean_confidence_interval got non-finite values: {array[~np.isfinite(array)][:5]}.")
    return float(array.mean()), float(z * array.std() / np.sqrt(array.size))


def format_interval(mean: float, half_width: float, scale: float = 100.0, digits: int = 2) -> str:
    """'mean +- half_width' scaled (percent by default), e.g. '71.25 +- 1.03'."""
    return f"{mean * scale:.{digits}f} +- {half_width * scale:.{digits}f}"
