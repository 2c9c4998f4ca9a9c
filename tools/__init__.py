"""Command-line launchers: absl shells that parse flags, call lite_tf, print.

Importing this package (every launcher does, first) quiets TensorFlow's C++ start-up log (CUDA
probing on CPU-only machines, oneDNN and driver notices). TensorFlow 2.21 writes those before its
log level applies, so they are sent to /dev/null while TensorFlow loads and finds its devices.
Set TF_CPP_MIN_LOG_LEVEL yourself (e.g. 0) to see them again. (absl's INFO lines are off unless
--verbosity is given: lite_tf.cli.)
"""
import os
import sys


def _quiet_tensorflow_start() -> None:
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:  # the user chose a level: show what it lets through
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


_quiet_tensorflow_start()
