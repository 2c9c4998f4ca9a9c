"""EfficientNet-B0 with FiLM after the stem, every MBConv depthwise and the head batch norm.

The graph mirrors ``keras.applications.EfficientNetB0`` (no top, average pooling) layer by layer and
name by name, so weights transfer from the application (:func:`transfer_application_weights`); with
identity FiLM the output equals the application's. Inputs are images in [-1, 1] (as the plain
``efficientnet_b0`` backbone), rescaled to the application's [0, 255].
"""
from __future__ import annotations

import math
import os
from typing import Optional

import keras

from lite_tf.backbones.film import FilmSites
from lite_tf.registry import register_backbone
from lite_tf.errors import ConfigError

# (kernel, repeats, filters_in, filters_out, expand_ratio, strides) of B0; squeeze-excite ratio 0.25.
B0_BLOCKS = ((3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2), (5, 2, 24, 40, 6, 2), (3, 3, 40, 80, 6, 2),
             (5, 3, 80, 112, 6, 1), (5, 4, 112, 192, 6, 2), (3, 1, 192, 320, 6, 1))
DROP_CONNECT_RATE = 0.2
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)
MIN_IMAGE_SIZE = 32
PADDINGS = ("tf_same", "symmetric")


def _correct_pad(size: int, kernel: int):
    adjust = 1 - size % 2
    return ((kernel // 2 - adjust, kernel // 2), (kernel // 2 - adjust, kernel // 2))


def _stride2_pad(kernel: int, size: int, symmetric: bool):
    """Zero padding before a stride-2 layer: TensorFlow 'same' for a ``size`` px map, or symmetric k // 2."""
    return ((kernel // 2,) * 2,) * 2 if symmetric else _correct_pad(size, kernel)


def _mbconv(x, sites: FilmSites, name: str, kernel, filters_in, filters_out, expand_ratio, strides, drop_rate,
            padding_size: int, symmetric: bool, epsilon: float):
    inputs = x
    filters = filters_in * expand_ratio
    if expand_ratio != 1:
        x = keras.layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{name}expand_conv")(x)
        x = keras.layers.BatchNormalization(epsilon=epsilon, name=f"{name}expand_bn")(x)
        x = keras.layers.Activation("swish", name=f"{name}expand_activation")(x)
    if strides == 2:
        x = keras.layers.ZeroPadding2D(_stride2_pad(kernel, padding_size, symmetric), name=f"{name}dwconv_pad")(x)
    x = keras.layers.DepthwiseConv2D(kernel, strides=strides, padding="valid" if strides == 2 else "same",
                                     use_bias=False, name=f"{name}dwconv")(x)
    x = keras.layers.BatchNormalization(epsilon=epsilon, name=f"{name}bn")(x)
    x = sites.apply(x, f"{name}film")
    x = keras.layers.Activation("swish", name=f"{name}activation")(x)
    se = keras.layers.GlobalAveragePooling2D(name=f"{name}se_squeeze")(x)
    se = keras.layers.Reshape((1, 1, filters), name=f"{name}se_reshape")(se)
    se = keras.layers.Conv2D(max(1, int(filters_in * 0.25)), 1, padding="same", activation="swish",
                             name=f"{name}se_reduce")(se)
    se = keras.layers.Conv2D(filters, 1, padding="same", activation="sigmoid", name=f"{name}se_expand")(se)
    x = keras.layers.multiply([x, se], name=f"{name}se_excite")
    x = keras.layers.Conv2D(filters_out, 1, padding="same", use_bias=False, name=f"{name}project_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=epsilon, name=f"{name}project_bn")(x)
    if strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = keras.layers.add([x, inputs], name=f"{name}add")
    return x


def build_film_efficientnet_b0(image_size: int, imagenet_input_scaling: bool = False,
                               name: str = "efficientnet_b0_film", padding_image_size: Optional[int] = None,
                               padding: str = "tf_same", batch_norm_epsilon: float = 1e-3) -> keras.Model:
    """The FiLM EfficientNet-B0 graph with random weights.

    ``imagenet_input_scaling`` adds the extra per-channel rescaling that keras.applications inserts
    when built with ``weights="imagenet"`` (its ImageNet weights expect it).
    ``padding_image_size``: the image size that TensorFlow-'same' padding of the stride-2 layers is
    computed for (default: ``image_size``, as keras and TensorFlow do). EfficientNet-PyTorch pads
    statically for 224 px whatever the input, so the official LITE 84 px models need 224 here
    (their 84 px maps then shrink 42, 21, 10, 5, 2 instead of 42, 21, 11, 6, 3).
    ``padding='symmetric'`` and ``batch_norm_epsilon=1e-5`` give torchvision's ``efficientnet_b0``
    (k // 2 on every side of a stride-2 layer; PyTorch's default batch-norm eps); the defaults are
    TensorFlow's and EfficientNet-PyTorch's (the official LITE / ORBIT backbone).
    """
    if padding not in PADDINGS:
        raise ConfigError(f"efficientnet_b0_film padding must be one of {PADDINGS}; got {padding!r}.")
    symmetric = padding == "symmetric"
    if not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise ConfigError(f"efficientnet_b0_film needs square images of at least {MIN_IMAGE_SIZE} px; "
                         f"got image_size={image_size!r}.")
    inputs = keras.Input((image_size, image_size, 3), name="images")
    sites = FilmSites()
    x = keras.layers.Rescaling(127.5, offset=127.5, name="to_pixels")(inputs)
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescaling")(x)
    x = keras.layers.Normalization(axis=-1, name="normalization")(x)
    if imagenet_input_scaling:
        x = keras.layers.Rescaling([1.0 / math.sqrt(s) for s in IMAGENET_STDDEV_RGB], name="imagenet_scaling")(x)
    if padding_image_size is not None and (not isinstance(padding_image_size, int) or padding_image_size < 1):
        raise ConfigError(f"efficientnet_b0_film padding_image_size must be a positive int or None; "
                         f"got {padding_image_size!r}.")
    padding_size = padding_image_size or image_size  # spatial size the padding is computed for, per stage
    x = keras.layers.ZeroPadding2D(_stride2_pad(3, padding_size, symmetric), name="stem_conv_pad")(x)
    padding_size = -(-padding_size // 2)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="valid", use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=batch_norm_epsilon, name="stem_bn")(x)
    x = sites.apply(x, "stem_film")
    x = keras.layers.Activation("swish", name="stem_activation")(x)
    total = float(sum(block[1] for block in B0_BLOCKS))
    index = 0
    for i, (kernel, repeats, filters_in, filters_out, expand, strides) in enumerate(B0_BLOCKS):
        for j in range(repeats):
            stride = strides if j == 0 else 1
            x = _mbconv(x, sites, f"block{i + 1}{chr(j + 97)}_", kernel,
                        filters_in if j == 0 else filters_out, filters_out, expand,
                        stride, DROP_CONNECT_RATE * index / total, padding_size, symmetric, batch_norm_epsilon)
            padding_size = -(-padding_size // stride)
            index += 1
    x = keras.layers.Conv2D(1280, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=batch_norm_epsilon, name="top_bn")(x)
    x = sites.apply(x, "top_film")
    x = keras.layers.Activation("swish", name="top_activation")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return sites.model(inputs, outputs, name)


def transfer_application_weights(application: keras.Model, model: keras.Model) -> None:
    """Copies every weight of a keras.applications EfficientNetB0 into ``model`` by layer name.

    The application's input Normalization layer is auto-named, so it is matched by type; it applies
    copied values only after ``finalize_state()``, which ``set_weights`` does not call.
    """
    for layer in application.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        target_name = "normalization" if isinstance(layer, keras.layers.Normalization) else layer.name
        try:
            target = model.get_layer(target_name)
        except ValueError as error:
            raise ConfigError(f"EfficientNet-B0 weights: layer {layer.name!r} of {application.name!r} has no "
                             f"counterpart in {model.name!r}; expected an EfficientNet-B0 (no top).") from error
        if [w.shape for w in target.get_weights()] != [w.shape for w in weights]:
            raise ConfigError(f"EfficientNet-B0 weights: layer {layer.name!r} has shapes "
                             f"{[w.shape for w in weights]}, {model.name!r} expects "
                             f"{[w.shape for w in target.get_weights()]}.")
        target.set_weights(weights)
        if isinstance(target, keras.layers.Normalization):
            target.finalize_state()  # Normalization reads its mean/variance variables only here


@register_backbone("efficientnet_b0_film")
def efficientnet_b0_film(image_size: int, weights: Optional[str] = None,
                         imagenet_input_scaling: Optional[bool] = None,
                         name: str = "efficientnet_b0_film", padding_image_size: Optional[int] = None,
                         padding: str = "tf_same", batch_norm_epsilon: float = 1e-3) -> keras.Model:
    """FiLM EfficientNet-B0 (1280-d average-pooled features), taking [images, *FiLM params].

    Args:
      weights: None (random), ``"imagenet"`` (keras.applications downloads them once, then reads
        its cache: needs the network the first time), or the path of a keras.applications
        EfficientNetB0 no-top weights file (.h5 / .weights.h5).
      imagenet_input_scaling: see :func:`build_film_efficientnet_b0`; defaults to True for
        ``"imagenet"`` (as keras.applications does) and False otherwise. Set it True for a local copy
        of the keras ImageNet no-top file.
      padding_image_size: see :func:`build_film_efficientnet_b0` (224 for the official 84 px models).
      padding, batch_norm_epsilon: see :func:`build_film_efficientnet_b0` ('symmetric', 1e-5 for
        torchvision's efficientnet_b0 weights).
    """
    if weights not in (None, "imagenet") and not os.path.isfile(str(weights)):
        raise FileNotFoundError(f"efficientnet_b0_film weights file {weights!r} does not exist; pass None, "
                                f"'imagenet' or the path of an EfficientNet-B0 no-top weights file.")
    if imagenet_input_scaling is None:
        imagenet_input_scaling = weights == "imagenet"
    model = build_film_efficientnet_b0(image_size, imagenet_input_scaling, name, padding_image_size, padding,
                                       batch_norm_epsilon)
    if weights is None:
        return model
    try:
        application = keras.applications.EfficientNetB0(
            include_top=False, weights=weights, input_shape=(image_size, image_size, 3), pooling="avg")
    except Exception as error:
        raise ConfigError(f"Could not load efficientnet_b0_film weights from {weights!r}: expected "
                         f"keras.applications EfficientNetB0 no-top weights. {error}") from error
    transfer_application_weights(application, model)
    return model
