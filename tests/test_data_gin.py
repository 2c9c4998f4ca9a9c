"""gin/data/metadataset.gin parses and drives the sampler and pipeline defaults."""
import os

import gin
import pytest

from lite_tf.data.metadataset import pipeline, sampling
from lite_tf.data.metadataset import spec as S

GIN_FILE = os.path.join(os.path.dirname(__file__), "..", "gin", "data", "metadataset.gin")


@pytest.fixture
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def test_gin_defaults_and_overrides(clean_gin, tmp_path):
    from lite_tf.experiment import parse_gin  # registers Training and the sources the file binds

    parse_gin([GIN_FILE], ["EpisodeSampler.max_support_set_size = 40", "support/Augmentation.flip = True"])
    spec = S.make_flat_spec("toy", str(tmp_path), {"TRAIN": 60, "VALID": 0, "TEST": 0}, {c: 30 for c in range(60)})
    sampler = sampling.EpisodeSampler(spec, "TRAIN", seed=0)
    assert sampler.max_support_set_size == 40 and sampler.max_ways_upper_bound == 50
    for _ in range(50):
        episode = sampler.sample()
        assert episode.num_support <= 40 and episode.way <= 40
    with gin.config_scope("support"):
        assert pipeline.Augmentation().flip
    assert not pipeline.Augmentation().flip
    with pytest.raises(ValueError, match="image_size"):
        with gin.unlock_config():
            gin.bind_parameter("make_episode_dataset.image_size", 4000)
        pipeline.make_episode_dataset(str(tmp_path), "TRAIN")
