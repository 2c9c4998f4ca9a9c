"""The child side of ``lite_tf.bench.runner``: ``python -m lite_tf.bench.child TARGET SPEC_JSON OUT``.

Imports TARGET ('module:function'), calls it on the spec and writes the returned row, plus the
device it ran on and TensorFlow's version, to OUT atomically. A failure exits non-zero with the
traceback on stderr and no OUT file.
"""
from __future__ import annotations

import importlib
import json
import os
import sys


def main(argv) -> None:
    target, spec, output = argv
    import tensorflow as tf

    from lite_tf import atomic, memory

    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)  # the allocator's peak is what we report
    module, _, function = target.partition(":")
    row = getattr(importlib.import_module(module), function)(json.loads(spec))
    row.update(device=memory.gpu_name() or f"CPU ({os.cpu_count()} cores)", tensorflow=tf.__version__)
    atomic.write_json(output, row, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
