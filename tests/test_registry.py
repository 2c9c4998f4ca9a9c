"""Plugin registry: names, gin configurability, entry points, errors."""
import sys
import types
from importlib import metadata

import gin
import keras
import pytest

from lite_tf import registry
from lite_tf.learner import Learner


def test_builtins_are_listed():
    assert "protonets" in registry.list_learners()
    assert {"conv4", "efficientnet_b0"} <= set(registry.list_backbones())


def test_unknown_names_list_the_known_ones():
    with pytest.raises(registry.UnknownPluginError, match=r"Unknown learner 'protonet'\. Known learners: .*protonets"):
        registry.get_learner("protonet")
    with pytest.raises(KeyError, match=r"Unknown backbone 'resnet9'\. Known backbones: .*conv4"):
        registry.get_backbone("resnet9")


def test_gin_binds_registered_plugins_and_rejects_misspelt_parameters():
    registry.load_plugins()
    with gin.unlock_config():
        gin.clear_config()
        gin.parse_config("learners.protonets.backbone = 'efficientnet_b0'\nbackbones.conv4.filters = 5")
        try:
            assert registry.get_learner("protonets")().backbone_spec == "efficientnet_b0"
            assert registry.get_backbone("conv4")(image_size=16).layers[1].filters == 5
            with pytest.raises(ValueError, match="doesn't have a parameter named 'filter'"):
                gin.parse_config("backbones.conv4.filter = 5")
        finally:
            gin.clear_config()


def test_third_party_learner_through_entry_point(monkeypatch):
    module = types.ModuleType("third_party_learner")

    def define():
        @registry.register_learner("nearest_mean_test")
        class NearestMean(Learner):
            def build_for(self, image_size):
                self.built = True

            def call(self, support_images, support_labels, query_images, way, mapper=None, training=False):
                return None

    module.define = define
    sys.modules["third_party_learner"] = module
    entry_point = metadata.EntryPoint("nearest_mean_test", "third_party_learner", "lite_tf.learners")
    real = metadata.entry_points

    def fake_entry_points(group=None, **kwargs):
        if group == "lite_tf.learners":
            define()
            return [entry_point]
        return real(group=group, **kwargs)

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    monkeypatch.setitem(registry._PLUGINS_LOADED, "learner", False)
    try:
        learner = registry.get_learner("nearest_mean_test")()
        assert isinstance(learner, Learner) and isinstance(learner, keras.layers.Layer)
    finally:
        registry._REGISTRIES["learner"].pop("nearest_mean_test", None)
        sys.modules.pop("third_party_learner", None)


def test_name_clash_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        registry.register_learner("protonets")(type("Other", (Learner,), {}))


def test_installed_entry_points_name_the_builtin_learner():
    names = {ep.name for ep in metadata.entry_points(group="lite_tf.learners")}
    assert "protonets" in names, "install the package (pip install -e .) so entry points exist"


def test_readme_plugin_example_registers_and_trains():
    """The learner plugin example in README.md runs as written."""
    import os
    import re

    import numpy as np

    from lite_tf import EpisodicModel, LiteConfig
    from tests.helpers import make_episode

    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    example = re.search(r"```python\n(# my_package/nearest_mean.py\n.*?)```", readme, re.S).group(1)
    try:
        exec(compile(example, "README.md", "exec"), {})
        learner = registry.get_learner("cosine_protonets")(backbone="conv4")
        model = EpisodicModel(learner, 16, lite=LiteConfig(h=2, chunk_size=2))
        model.compile(keras.optimizers.Adam(1e-3))
        episode = make_episode(np.random.default_rng(0), way=3, shots=[1, 2, 3], queries=2)
        logs = model.train_on_batch(episode, return_dict=True)
        assert np.isfinite(logs["loss"])
    finally:
        registry._REGISTRIES["learner"].pop("cosine_protonets", None)
