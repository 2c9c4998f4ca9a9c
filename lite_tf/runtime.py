"""Process-wide TensorFlow runtime settings that decide a LITE step's peak memory.

``inter_op_threads`` (gin ``runtime.inter_op_threads``, default 1) is how many independent ops of a
graph TensorFlow runs at once. A LITE step's graph has independent branches that each hold a batch
of activations: the back-propagation of H and that of the queries, the no-gradient chunk loop and
the H forward pass. Run side by side they are alive together; one at a time, the peak is the
largest of them. Measured on the 2-core VM (Simple CNAPs + FiLM EfficientNet-B0, 224 px, N=100,
h=40, chunks of 40, 40 queries, remat): live tensors 3.2-3.7 GiB with TensorFlow's default,
2.7 GiB with one thread, for a step about 10 % slower (README, "Memory"). The convolutions
themselves still use every core (intra-op threads); the Meta-Dataset pipeline's throughput was the
same within noise (``tools.benchmark --case=pipeline``). ``0`` keeps TensorFlow's default (one per
core).

TensorFlow fixes the value when its runtime starts, so :func:`apply` runs before anything is
built: the launchers, ``experiment.build`` and the benchmark and planner children call it.
"""
from __future__ import annotations

import logging

import gin
import tensorflow as tf

from lite_tf.errors import ConfigError

_warned = set()


@gin.configurable("runtime")
def settings(inter_op_threads: int = 1) -> dict:
    """The runtime settings gin binds (``runtime.inter_op_threads``)."""
    if isinstance(inter_op_threads, bool) or not isinstance(inter_op_threads, int) or inter_op_threads < 0:
        raise ConfigError(f"runtime.inter_op_threads must be a non-negative integer (0: TensorFlow's default); "
                          f"got {inter_op_threads!r}.")
    return {"inter_op_threads": inter_op_threads}


def apply() -> dict:
    """Applies :func:`settings`; returns them. When TensorFlow already started with another value
    (a script that ran ops first), says so once in the log and keeps TensorFlow's."""
    wanted = settings()
    count = wanted["inter_op_threads"]
    if tf.config.threading.get_inter_op_parallelism_threads() != count:
        try:
            tf.config.threading.set_inter_op_parallelism_threads(count)
        except RuntimeError:
            if count not in _warned:
                _warned.add(count)
                logging.getLogger("lite_tf").warning(
                    "runtime.inter_op_threads=%d not applied: TensorFlow had already started with %d; set it before "
                    "running any TensorFlow op (peak memory may be higher).", count,
                    tf.config.threading.get_inter_op_parallelism_threads())
    return wanted
