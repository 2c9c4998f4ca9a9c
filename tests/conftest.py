"""Shared pytest set-up: quiet TensorFlow, a ``slow`` marker (skipped unless --runslow), seeds."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: large-image or long tests, run with --runslow")
    # The launchers' thread setting, before any test starts TensorFlow: every test runs as they do,
    # whatever the (random) test order, instead of whichever test first calls experiment.build.
    from lite_tf import runtime

    runtime.apply()


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def _fresh_state():
    """Each test starts with no gin bindings, a fresh Keras session and the same seed.

    Without this, bindings one test parses (e.g. a quickstart's ``stem_pool``) leak into the next
    and results depend on test order (CI runs the suite in random order, pytest-randomly).
    """
    import gin
    import keras

    with gin.unlock_config():
        gin.clear_config()
    keras.backend.clear_session()
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    with gin.unlock_config():
        gin.clear_config()
