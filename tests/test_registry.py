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
    registry.list_learners()  # the built-ins register on first lookup; a clash is with a registered name
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


NEW_LEARNER_MODULE = '''
"""A learner plugin in its own package: nearest class mean on a registered backbone."""
import tensorflow as tf

from lite_tf.heads import class_means, negative_squared_distances
from lite_tf.learner import Learner
from lite_tf.registry import register_learner


@register_learner("tmp_nearest_mean")
class NearestMean(Learner):
    def __init__(self, backbone="conv4", temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        self.backbone_spec, self.temperature = backbone, temperature

    def build_for(self, image_size):
        self.backbone = self.build_backbone(self.backbone_spec, image_size, filters=8, blocks=2)
        self.built = True

    def call(self, support_images, support_labels, query_images, way, mapper, training=False):
        support = mapper.map(lambda x: self.backbone(x, training=False), support_images)
        prototypes = class_means(support, support_labels, way)
        logits = negative_squared_distances(self.backbone(query_images, training=False), prototypes)
        return logits / self.temperature
'''


def test_a_new_learner_is_one_module_and_one_gin_file(tmp_path, monkeypatch):
    """A learner from a temporary installed package (module + entry point) trains one episode from gin."""
    import numpy as np

    from lite_tf import EpisodicModel, LiteConfig
    from tests.helpers import make_episode

    package = tmp_path / "tmp_learner_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nearest.py").write_text(NEW_LEARNER_MODULE)
    dist_info = tmp_path / "tmp_learner_pkg-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: tmp-learner-pkg\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[lite_tf.learners]\ntmp_nearest_mean = tmp_learner_pkg.nearest\n")
    gin_file = tmp_path / "tmp_nearest_mean.gin"
    gin_file.write_text("learners.tmp_nearest_mean.temperature = 2.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry._PLUGINS_LOADED, "learner", False)
    try:
        assert "tmp_nearest_mean" in registry.list_learners()
        assert "protonets" in registry.list_learners()  # the built-ins come through their entry points too
        gin.parse_config_file(str(gin_file))
        learner = registry.get_learner("tmp_nearest_mean")()
        assert learner.temperature == 2.0
        model = EpisodicModel(learner, 16, lite=LiteConfig(h=2, chunk_size=2))
        model.compile(keras.optimizers.Adam(1e-3))
        before = [w.copy() for w in model.get_weights()]
        logs = model.train_on_batch(make_episode(np.random.default_rng(0), way=3, shots=[1, 2, 3], queries=2),
                                    return_dict=True)
        assert np.isfinite(logs["loss"])
        assert not all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    finally:
        registry._REGISTRIES["learner"].pop("tmp_nearest_mean", None)
        for name in [m for m in sys.modules if m.startswith("tmp_learner_pkg")]:
            sys.modules.pop(name)
        gin.clear_config()


def test_no_registered_learner_says_to_install_the_package(monkeypatch):
    monkeypatch.setitem(registry._REGISTRIES, "learner", {})
    monkeypatch.setitem(registry._PLUGINS_LOADED, "learner", True)
    with pytest.raises(registry.UnknownPluginError, match=r"no learner is registered.*pip install -e \."):
        registry.get_learner("protonets")


def test_registry_does_not_import_the_learners_package():
    import inspect

    source = inspect.getsource(registry)
    assert '"learners"' not in source and "'learners'" not in source
