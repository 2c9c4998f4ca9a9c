"""FiLM EfficientNet-B0: identity FiLM equals keras.applications.EfficientNetB0; weights; bad input."""
import os

import keras
import numpy as np
import pytest

from lite_tf.backbones.film import call_backbone, film_sites, identity_film
from lite_tf.backbones.film_efficientnet import efficientnet_b0_film, transfer_application_weights


def randomised_application(size):
    """A random EfficientNetB0 whose batch-norm statistics and input normalisation are not trivial."""
    application = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(size, size, 3),
                                                    pooling="avg")
    rng = np.random.default_rng(0)
    for layer in application.layers:
        if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.Normalization)):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in layer.get_weights()])
            if isinstance(layer, keras.layers.Normalization):
                layer.finalize_state()  # else the application keeps normalising with mean 0, variance 1
    return application


def check_identity_equals_application(size):
    application = randomised_application(size)
    model = efficientnet_b0_film(size)
    transfer_application_weights(application, model)
    images = np.random.default_rng(1).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    expected = application(images * 127.5 + 127.5, training=False).numpy()
    got = call_backbone(model, images, identity_film(model)).numpy()
    assert got.shape == (2, 1280)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
    return model, images


def test_identity_film_equals_keras_application():
    model, images = check_identity_equals_application(48)
    sites = film_sites(model)
    assert [name for name, _ in sites][:2] == ["stem_film", "block1a_film"] and sites[-1] == ("top_film", 1280)
    assert len(sites) == 18  # stem + 16 MBConv depthwise batch norms + head
    film = [(g * 1.5, b + 0.1) for g, b in identity_film(model)]
    assert not np.allclose(call_backbone(model, images, film).numpy(), call_backbone(model, images).numpy())


@pytest.mark.slow
@pytest.mark.parametrize("size", [84, 224, 320])
def test_identity_film_equals_keras_application_at_paper_sizes(size):
    check_identity_equals_application(size)


def test_loads_a_local_application_weights_file(tmp_path):
    application = randomised_application(32)
    path = os.path.join(tmp_path, "b0_notop.weights.h5")
    application.save_weights(path)
    model = efficientnet_b0_film(32, weights=path)
    images = np.random.default_rng(2).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(call_backbone(model, images).numpy(),
                               application(images * 127.5 + 127.5, training=False).numpy(), atol=1e-5)


def test_wrong_architecture_weights_file_is_named(tmp_path):
    path = os.path.join(tmp_path, "conv4.weights.h5")
    from lite_tf.backbones.conv import conv4
    conv4(32).save_weights(path)
    with pytest.raises(ValueError, match="Could not load efficientnet_b0_film weights .*conv4.weights.h5"):
        efficientnet_b0_film(32, weights=path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        efficientnet_b0_film(32, weights=os.path.join(tmp_path, "missing.h5"))


def test_image_size_it_cannot_take_is_named():
    with pytest.raises(ValueError, match="at least 32 px; got image_size=16"):
        efficientnet_b0_film(16)


def test_padding_computed_for_224_px_as_efficientnet_pytorch_does_at_84_px():
    """EfficientNet-PyTorch pads statically for 224 px: at 84 px its maps shrink 42, 21, 10, 5, 2."""
    official = efficientnet_b0_film(84, padding_image_size=224)
    default = efficientnet_b0_film(84)
    sizes = lambda model: [model.get_layer(f"{b}_activation").output.shape[1]
                           for b in ("block1a", "block2a", "block3a", "block4a", "block6a")]
    assert sizes(official) == [42, 21, 10, 5, 2]
    assert sizes(default) == [42, 21, 11, 6, 3]  # TensorFlow 'same' at the real size
    assert official.get_layer("block3a_dwconv_pad").padding == ((1, 2), (1, 2))  # 56 px padding on a 21 px map
    assert default.get_layer("block3a_dwconv_pad").padding == ((2, 2), (2, 2))
    assert [w.shape for w in official.weights] == [w.shape for w in default.weights]
    with pytest.raises(ValueError, match="padding_image_size must be a positive int"):
        efficientnet_b0_film(84, padding_image_size=0)
