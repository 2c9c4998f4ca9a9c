"""FiLM ResNet-18: shapes at 84 and 224 px, FiLM sites, weights files, bad input."""
import os

import numpy as np
import pytest
import tensorflow as tf

from lite_tf.backbones.film import call_backbone, film_sites, identity_film
from lite_tf.backbones.resnet import resnet18_film, resnet18_film_84
from lite_tf.registry import UnknownPluginError, get_backbone


@pytest.mark.parametrize("factory, size", [(resnet18_film_84, 84), (resnet18_film, 224)])
def test_shapes_and_film_sites(factory, size):
    model = factory(size)
    sites = film_sites(model)
    assert len(sites) == 16  # two batch norms in each of 8 basic blocks
    assert [c for _, c in sites] == [64] * 4 + [128] * 4 + [256] * 4 + [512] * 4
    images = tf.random.uniform([2, size, size, 3], -1, 1)
    features = call_backbone(model, images)
    assert features.shape == (2, 512)
    film = [(g * 0.5, b) for g, b in identity_film(model)]
    assert not np.allclose(call_backbone(model, images, film).numpy(), features.numpy())


def test_stems_differ_as_specified():
    small, large = resnet18_film_84(84), resnet18_film(224)
    assert small.get_layer("stem_conv").kernel.shape[:2] == (5, 5)
    assert large.get_layer("stem_conv").kernel.shape[:2] == (7, 7)
    assert "stem_pool" not in [layer.name for layer in small.layers]
    assert small.get_layer("layer1_0_1_conv").output.shape[1] == 41  # no max-pool after the 84 px stem


def test_weights_round_trip_and_wrong_file(tmp_path):
    source = resnet18_film_84(32)
    path = os.path.join(tmp_path, "r18.weights.h5")
    source.save_weights(path)
    images = tf.random.uniform([1, 32, 32, 3], -1, 1)
    loaded = resnet18_film_84(32, weights=path)
    np.testing.assert_array_equal(call_backbone(loaded, images).numpy(), call_backbone(source, images).numpy())
    wrong = os.path.join(tmp_path, "conv4.weights.h5")
    get_backbone("conv4")(image_size=32).save_weights(wrong)
    with pytest.raises(ValueError, match="Could not load resnet18_film_84 weights .*conv4.weights.h5"):
        resnet18_film_84(32, weights=wrong)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="resnet18_film needs square images of at least 32 px"):
        resnet18_film(16)
    with pytest.raises(FileNotFoundError, match="nothing.h5"):
        resnet18_film_84(32, weights="nothing.h5")
    with pytest.raises(UnknownPluginError, match="Unknown backbone 'resnet19'.*resnet18_film"):
        get_backbone("resnet19")
