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
