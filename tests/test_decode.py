"""lite_tf.data.decode: resize methods (``"reference"`` = Google's align_corners bilinear), output
dtypes, options checked, and decode failures named."""
import numpy as np
import pytest
import tensorflow as tf

from lite_tf.data import decode
from lite_tf.errors import ConfigError
from lite_tf.images import scale_pixels


def noise_png(seed, size=32):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    return tf.io.encode_png(pixels).numpy(), pixels


def test_reference_resize_is_tf1_align_corners_bilinear():
    encoded, pixels = noise_png(0)
    expected = tf.compat.v1.image.resize(pixels, [126, 126], method=tf.compat.v1.image.ResizeMethod.BILINEAR,
                                         align_corners=True)
    got = decode.decode_image(tf.constant(encoded), 126, method="reference", dtype=tf.float32)
    np.testing.assert_array_equal(got.numpy(), scale_pixels(expected).numpy())
    default = decode.decode_image(tf.constant(encoded), 126, dtype=tf.float32)
    # The default (half-pixel centres) differs visibly when upsampling 32 -> 126 px.
    assert np.abs(default.numpy() - got.numpy()).max() * 127.5 > 10


def test_dtypes_and_same_size_unchanged():
    encoded, pixels = noise_png(1, size=24)
    for method in ("bilinear", "reference", "bicubic", "area", "nearest"):
        np.testing.assert_array_equal(decode.decode_image(tf.constant(encoded), 24, dtype=tf.uint8, method=method),
                                      pixels)
    as_float = decode.decode_image(tf.constant(encoded), 24, dtype=tf.float32).numpy()
    np.testing.assert_allclose(as_float, pixels / 127.5 - 1.0, atol=1e-6)


def test_integer_fast_dct_is_an_option_not_the_default():
    jpeg = tf.io.encode_jpeg(noise_png(2)[1], quality=90)
    exact = decode.decode_image(jpeg, 32, dtype=tf.uint8)
    np.testing.assert_array_equal(exact, tf.io.decode_jpeg(jpeg, channels=3))
    fast = decode.decode_image(jpeg, 32, dtype=tf.uint8, dct_method="INTEGER_FAST")
    assert np.abs(fast.numpy().astype(int) - exact.numpy()).max() <= 16


def test_decode_batch_in_order_and_failures_named():
    images = [noise_png(seed)[0] for seed in range(4)]
    batch = decode.decode_batch(tf.constant(images), 20, dtype=tf.uint8).get_single_element()
    for encoded, got in zip(images, batch.numpy()):
        np.testing.assert_array_equal(got, decode.decode_image(tf.constant(encoded), 20, dtype=tf.uint8))
    broken = images[:2] + [images[2][:40]] + images[3:]
    paths = tf.constant([f"frames/{i}.png" for i in range(4)])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"could not be decoded.*in.*video 7.*frames:\] \[frames/2.png\]"):
        decode.decode_batch(tf.constant(broken), 20, what="video 7", names=[("frames:", paths)]).get_single_element()


@pytest.mark.parametrize("options,message", [({"method": "cubic"}, "Resize method"),
                                             ({"dtype": tf.int32}, "float32 or uint8"),
                                             ({"dct_method": "FAST"}, "dct_method")])
def test_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        decode.check_options(**options)
