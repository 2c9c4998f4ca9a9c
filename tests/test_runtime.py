"""Runtime settings that decide peak memory: bound by gin, applied before TensorFlow starts."""
import subprocess
import sys

import gin
import pytest

from lite_tf import runtime
from lite_tf.errors import ConfigError


@pytest.mark.parametrize("value", [-1, True, 1.5, "1"])
def test_bad_inter_op_threads_are_one_line(value):
    with gin.unlock_config():
        gin.bind_parameter("runtime.inter_op_threads", value)
    try:
        with pytest.raises(ConfigError, match="runtime.inter_op_threads"):
            runtime.settings()
    finally:
        gin.clear_config()


def test_apply_before_tensorflow_starts_sets_the_threads():
    """In a fresh process the default (one inter-op thread) and a gin binding both take effect."""
    code = ("import gin, sys; from lite_tf import runtime; gin.parse_config(sys.argv[1:]); runtime.apply(); "
            "import tensorflow as tf; tf.constant(1.0) + 1.0; "
            "print(tf.config.threading.get_inter_op_parallelism_threads())")
    for bindings, expected in (([], "1"), (["runtime.inter_op_threads = 3"], "3")):
        out = subprocess.run([sys.executable, "-c", code, *bindings], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split()[-1] == expected
