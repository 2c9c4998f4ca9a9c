"""Every gin/learners file parses against the registered plugins and sets what it says."""
import glob
import os

import gin
import pytest

from lite_tf import LiteConfig
from lite_tf.registry import get_learner, load_plugins

GIN_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "gin", "learners")
EXPECTED_H = {"simple_cnaps": 40, "cnaps": 40, "protonets": 40, "finetuner": 40}
# ORBIT experiments use the same learner files and set h once themselves (LITE ORBIT code's values).
ORBIT_H = {"simple_cnaps": 8, "cnaps": 8, "protonets": 16}


@pytest.mark.parametrize("stem", sorted(EXPECTED_H))
def test_gin_file_binds_the_learner_and_lite(stem):
    path = os.path.join(GIN_DIR, f"{stem}.gin")
    load_plugins()
    gin.clear_config()
    try:
        gin.parse_config_file(path)
        learner = get_learner(stem)()  # constructing builds nothing (no download)
        config = LiteConfig()
    finally:
        gin.clear_config()
    assert config.h == EXPECTED_H[stem] and config.chunk_size == 40
    if stem.startswith(("simple_cnaps", "cnaps")):
        assert learner.backbone_spec == "efficientnet_b0_film" and learner.film_l2_weight == 0.001
        assert learner.backbone_trainable is False and learner.bn_training is False


def test_every_gin_file_is_covered():
    stems = {os.path.basename(p)[:-4] for p in glob.glob(os.path.join(GIN_DIR, "*.gin"))}
    assert stems == set(EXPECTED_H)


@pytest.mark.parametrize("stem", sorted(ORBIT_H))
def test_orbit_experiment_overrides_h_once(stem):
    from lite_tf.experiment import parse_gin

    text = parse_gin([f"gin/experiments/orbit_{stem}.gin"], [])
    assert LiteConfig().h == ORBIT_H[stem] and LiteConfig().chunk_size == 64
    assert text.count("LiteConfig.h =") == 1
    assert "FRAME_SIZE = 224" in text and "EpisodicModel.image_size = %FRAME_SIZE" in text
