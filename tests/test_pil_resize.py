"""PIL's resize in TensorFlow ops: ``Image.resize((s, s), Image.LANCZOS)``, the official LITE code's VTAB
resize (cambridge-mlg/LITE ``src/tf_dataset_reader.py`` ``_prepare_image``), and ``BILINEAR``
(torchvision ``Resize`` on PIL images: its SUN397 reader), compared with PIL itself."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from lite_tf.data.decode import RESIZE_METHODS, decode_image, pil_resize, resize
from lite_tf.errors import ConfigError

FILTERS = {"pil_lanczos": Image.LANCZOS, "pil_bilinear": Image.BILINEAR}
# (height, width, size): shrinking, enlarging, mixed, 1-px and already-square images
SHAPES = [(37, 53, 84), (300, 200, 84), (200, 300, 224), (477, 500, 224), (13, 9, 32), (1, 7, 8), (64, 64, 64),
          (90, 400, 32), (400, 90, 32)]


def photo_like(height, width, seed=0):
    """Smooth gradients (where rounding matters most) plus noise, uint8 [H, W, 3]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    smooth = np.stack([127 + 120 * np.sin(x / 7.0 + c) * np.cos(y / 11.0) for c in range(3)], -1)
    return np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)


def pil_reference(image, size, resample):
    """PIL's two passes, horizontal then vertical: ``Image.resize`` in every Pillow up to 12 (the
    official runs); Pillow 13 shrinks very tall images height first, so those go pass by pass here."""
    picture = Image.fromarray(image)
    height, width = image.shape[:2]
    if height > size and height - size > 2 * (width - size):
        picture = picture.resize((size, height), resample)
    return np.asarray(picture.resize((size, size), resample), np.int32)


@pytest.mark.parametrize("method", sorted(FILTERS))
def test_uint8_images_are_pils_pixels(method):
    for number, (height, width, size) in enumerate(SHAPES):
        image = photo_like(height, width, number)
        expected = pil_reference(image, size, FILTERS[method])
        got = pil_resize(tf.constant(image), size, method).numpy()
        np.testing.assert_array_equal(got.astype(np.int32), expected, err_msg=f"{height}x{width} -> {size}")
        grey = image[..., 0]  # mode 'L' (LITE's smallnorb), made RGB after the resize
        grey_expected = np.repeat(pil_reference(grey, size, FILTERS[method])[..., None], 3, -1)
        np.testing.assert_array_equal(pil_resize(tf.constant(np.repeat(grey[..., None], 3, -1)), size, method)
                                      .numpy().astype(np.int32), grey_expected)


def test_float_images_follow_pils_mode_f_within_one_grey_level():
    """LITE's dsprites: ``Image.fromarray(image * 255.0)`` is mode 'F'; ``convert('RGB')`` clips and truncates."""
    rng = np.random.default_rng(5)
    for height, width, size in ((64, 64, 84), (64, 64, 32), (50, 70, 224)):
        binary = (rng.random((height, width)) > 0.6) * 255.0
        expected = np.asarray(Image.fromarray(binary).resize((size, size), Image.LANCZOS).convert("RGB"), np.int32)
        pixels = pil_resize(tf.constant(np.repeat(binary[..., None], 3, -1)), size).numpy()
        got = np.floor(np.clip(pixels, 0, 255)).astype(np.int32)
        assert np.abs(got - expected).max() <= 1


def test_pil_lanczos_is_a_resize_method_without_python_ops():
    assert {"pil_lanczos", "pil_bilinear"} <= set(RESIZE_METHODS)
    image = photo_like(30, 45)
    np.testing.assert_array_equal(resize(tf.constant(image), 16, "pil_lanczos").numpy(),
                                  pil_reference(image, 16, Image.LANCZOS))
    encoded = tf.io.encode_png(tf.constant(image))
    dataset = tf.data.Dataset.from_tensors(encoded).map(
        lambda data: decode_image(data, 16, dtype=tf.uint8, method="pil_lanczos"))
    np.testing.assert_array_equal(next(iter(dataset)).numpy(), pil_reference(image, 16, Image.LANCZOS))
    graph = dataset._as_serialized_graph().numpy()
    assert not [op for op in (b"PyFunc", b"EagerPyFunc", b"PyFuncStateless") if op in graph]
    with pytest.raises(ConfigError, match="pil_resize method"):
        pil_resize(tf.constant(image), 16, "lanczos3")
