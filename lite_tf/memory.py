"""Resident memory of this process: current, peak, and a resettable peak (Linux), for benchmarks
and TensorBoard. Peaks come from the kernel's high-water mark, so short spikes are never missed."""
from __future__ import annotations

import resource


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
