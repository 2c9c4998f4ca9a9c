"""Child functions for the benchmark runner's tests (run in fresh processes by lite_tf.bench.runner)."""
import os
import signal
import time


def kill_self(spec):
    """What the kernel's out-of-memory killer does to a child: SIGKILL, no row written."""
    os.kill(os.getpid(), signal.SIGKILL)


def fail(spec):
    raise ValueError(f"bad spec {spec['value']}")


def sleep(spec):
    time.sleep(spec["seconds"])
    return {"slept": spec["seconds"]}
