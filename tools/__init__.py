"""Command-line launchers: absl shells that parse flags, call lite_tf, print.

Importing this package (every launcher does, first) quiets TensorFlow's C++ start-up log (the
"All log messages before absl::InitializeLog()" warning, CUDA probing on CPU-only machines, oneDNN
and CPU-feature notices). TensorFlow 2.21 writes those before any log level applies, so even an
exported TF_CPP_MIN_LOG_LEVEL=3 does not stop them: file descriptor 2 is captured while TensorFlow
loads and finds its devices, and replayed only if loading fails. TF_CPP_MIN_LOG_LEVEL=0 shows them
again; unset, it becomes 3. (absl's INFO lines are off unless --verbosity is given: lite_tf.cli.)
"""
import os
import sys
import tempfile


def _quiet_tensorflow_start() -> None:
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if level.strip() == "0":  # the user asked for every line
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to quiet
        import tensorflow  # noqa: F401

        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            os.write(2, captured.read())  # what TensorFlow said before it failed to load
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


_quiet_tensorflow_start()
