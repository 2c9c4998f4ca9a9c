"""Resident memory of this process: current, peak, and a resettable peak (Linux), for benchmarks
and TensorBoard, and memory sizes as users write them. Peaks come from the kernel's high-water mark,
so short spikes are never missed."""
from __future__ import annotations

import re
import resource

from lite_tf.errors import ConfigError


def _status_bytes(key: str):
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def resident_bytes() -> int:
    """Current resident set size in bytes."""
    value = _status_bytes("VmRSS")
    if value is None:
        import psutil

        value = psutil.Process().memory_info().rss
    return value


def peak_resident_bytes() -> int:
    """Highest resident set size since the process started or since ``reset_peak_resident``."""
    value = _status_bytes("VmHWM")
    return value if value is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_resident() -> bool:
    """Resets the high-water mark to the current size (Linux); False where that is not possible,
    in which case peaks include everything since the process started."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


GIB = 2 ** 30


def gpu_name():
    """The first GPU's device name as TensorFlow reports it, or None on a machine without one."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)


def reset_gpu_peak() -> bool:
    """Resets TF's allocator peak on GPU:0; False when there is no GPU."""
    if gpu_name() is None:
        return False
    import tensorflow as tf

    tf.config.experimental.reset_memory_stats("GPU:0")
    return True


def gpu_peak_bytes():
    """TF's allocator peak on GPU:0 since the last reset (what a GPU run needs; host memory is
    not it), or None when there is no GPU."""
    if gpu_name() is None:
        return None
    import tensorflow as tf

    return tf.config.experimental.get_memory_info("GPU:0")["peak"]


class PeakMeter:
    """The peak memory of one measurement: resident host memory above the level when it started,
    and, on a GPU, the allocator's peak. Used by every benchmark case, so all report the same."""

    def __init__(self):
        self.baseline = resident_bytes()
        reset_peak_resident()
        self.on_gpu = reset_gpu_peak()

    def read(self) -> dict:
        gpu = gpu_peak_bytes() if self.on_gpu else None
        return {"host_baseline_gib": self.baseline / GIB,
                "host_peak_above_baseline_gib": (peak_resident_bytes() - self.baseline) / GIB,
                "gpu_peak_gib": None if gpu is None else gpu / GIB}


_UNITS = {"": GIB, "b": 1, "k": 2 ** 10, "kb": 2 ** 10, "kib": 2 ** 10, "m": 2 ** 20, "mb": 2 ** 20,
          "mib": 2 ** 20, "g": GIB, "gb": GIB, "gib": GIB, "t": 2 ** 40, "tb": 2 ** 40, "tib": 2 ** 40}


def parse_budget(value) -> float:
    """A memory budget in GiB from a number (GiB) or a string such as '12GiB', '800MiB', '1.5g'."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        budget = float(value)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        if not match or match.group(2).lower() not in _UNITS:
            raise ConfigError(f"memory_budget {value!r} is not a size; expected e.g. 12GiB, 800MiB or a number "
                              f"of GiB.")
        budget = float(match.group(1)) * _UNITS[match.group(2).lower()] / GIB
    if budget <= 0:
        raise ConfigError(f"memory_budget must be positive; got {value!r}.")
    return budget
