"""EfficientNet-B0 in the EfficientNet-PyTorch naming (``_conv_stem``, ``_blocks.{i}.*``, ``_bn1``).

That is the naming of lukemelas' EfficientNet-PyTorch ``efficientnet-b0`` file, of the official LITE
``feature_extractor.*`` and of ORBIT's EfficientNet. It maps onto any Keras model with the
keras.applications EfficientNetB0 layer names: lite_tf's ``efficientnet_b0_film`` or the application
itself (nested inside ``efficientnet_b0``). Both use TensorFlow 'same' padding and batch-norm eps
1e-3, as EfficientNet-PyTorch does.
"""
from __future__ import annotations

from typing import List, Tuple

import keras
import numpy as np

from lite_tf.backbones.film_efficientnet import B0_BLOCKS
from lite_tf.backbones.input_normalization import IMAGENET_MEAN_RGB, IMAGENET_STDDEV_RGB
from lite_tf.weights.assign import WeightMapper
from lite_tf.weights.state_dict import WeightsError

# Input conventions the Normalization layer can be set to (the model sees images in [-1, 1]):
#   'minus_one_one': the network sees [-1, 1] unchanged, as the official LITE and ORBIT code feed it;
#   'imagenet': (x01 - mean) / std on [0, 1] pixels, as EfficientNet-PyTorch's own examples feed it.
INPUT_CONVENTIONS = ("minus_one_one", "imagenet")


def find_layer(model: keras.Model, name: str):
    """The layer called ``name`` in ``model`` or in a model nested in it."""
    for layer in model.layers:
        if layer.name == name:
            return layer
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found = _find_or_none(layer, name)
            if found is not None:
                return found
    raise WeightsError(f"Model {model.name!r} has no layer {name!r}: expected an EfficientNet-B0 with the "
                       f"keras.applications layer names (e.g. efficientnet_b0_film).")


def _find_or_none(model, name):
    try:
        return find_layer(model, name)
    except WeightsError:
        return None


def b0_block_names() -> List[Tuple[str, bool]]:
    """``[(keras prefix, has expansion)]`` of the 16 MBConv blocks, in EfficientNet-PyTorch's order."""
    names = []
    for stage, (_, repeats, _, _, expand_ratio, _) in enumerate(B0_BLOCKS):
        for repeat in range(repeats):
            names.append((f"block{stage + 1}{chr(97 + repeat)}_", expand_ratio != 1))
    return names


def map_efficientnet_pytorch_b0(mapper: WeightMapper, model: keras.Model, prefix: str = "",
                                input_convention: str = "minus_one_one") -> None:
    """Plans every EfficientNet-B0 weight of ``model`` from ``{prefix}_conv_stem.weight`` etc.

    The ImageNet classifier ``{prefix}_fc.*`` (absent or empty in the official LITE model) is ignored:
    the backbone has no top.
    """
    blocks = []
    for index, (name, expands) in enumerate(b0_block_names()):
        block = f"{prefix}_blocks.{index}"
        expand = {"expand_conv": f"{block}._expand_conv", "expand_bn": f"{block}._bn0"} if expands else {}
        blocks.append((name, {**expand, "dwconv": f"{block}._depthwise_conv", "bn": f"{block}._bn1",
                              "se_reduce": f"{block}._se_reduce", "se_expand": f"{block}._se_expand",
                              "project_conv": f"{block}._project_conv", "project_bn": f"{block}._bn2"}))
    _map_b0(mapper, model, input_convention, (f"{prefix}_conv_stem", f"{prefix}_bn0"), blocks,
            (f"{prefix}_conv_head", f"{prefix}_bn1"), f"{prefix}_fc")


def _map_b0(mapper: WeightMapper, model: keras.Model, input_convention: str, stem: tuple, blocks: list,
            head: tuple, classifier: str) -> None:
    """What both PyTorch EfficientNet-B0 layouts share: stem, MBConv blocks and head (``stem`` / ``head``:
    the (conv, batch norm) state-dict names; ``blocks``: (keras block prefix, {keras layer suffix: state-dict
    name})), the ImageNet classifier ``classifier.*`` ignored, then the input convention."""
    if input_convention not in INPUT_CONVENTIONS:
        raise WeightsError(f"input_convention must be one of {INPUT_CONVENTIONS}; got {input_convention!r}.")
    layer = lambda name: find_layer(model, name)
    mapper.conv(layer("stem_conv"), stem[0])
    mapper.batch_norm(layer("stem_bn"), stem[1])
    for name, parts in blocks:
        for suffix, source in parts.items():
            plan = mapper.batch_norm if suffix.endswith("bn") else mapper.depthwise if suffix == "dwconv" else mapper.conv
            plan(layer(name + suffix), source)
    mapper.conv(layer("top_conv"), head[0])
    mapper.batch_norm(layer("top_bn"), head[1])
    for suffix in ("weight", "bias"):
        mapper.ignore(f"{classifier}.{suffix}", "the ImageNet classifier; the backbone has no top")
    set_input_convention(mapper, model, input_convention)


def set_input_convention(mapper: WeightMapper, model: keras.Model, convention: str) -> None:
    """Plans the Normalization layer's values so [-1, 1] images reach the stem as ``convention`` says."""
    try:
        normalization = find_layer(model, "normalization")
    except WeightsError:
        normalization = next((l for l in _all_layers(model) if isinstance(l, keras.layers.Normalization)), None)
    if normalization is None:
        raise WeightsError(f"Model {model.name!r} has no input Normalization layer to set.")
    if _has_layer(model, "imagenet_scaling"):
        raise WeightsError(f"Model {model.name!r} was built with imagenet_input_scaling=True (for keras' own "
                           f"ImageNet weights); build it with imagenet_input_scaling=False to import PyTorch weights.")
    # The graph computes (x + 1) / 2 (pixels / 255) before Normalization.
    if convention == "minus_one_one":
        mean, variance = np.full(3, 0.5), np.full(3, 0.25)
    else:
        mean, variance = np.array(IMAGENET_MEAN_RGB), np.square(IMAGENET_STDDEV_RGB)
    values = {"mean": mean, "variance": variance}
    for variable in normalization.weights:
        key = variable.path.split("/")[-1]
        if key in values:
            mapper.fixed(variable, values[key].reshape(variable.shape))
    mapper.after_commit(normalization.finalize_state)  # Normalization reads its variables only then


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _has_layer(model, name) -> bool:
    return any(layer.name == name for layer in _all_layers(model))


def map_torchvision_efficientnet_b0(mapper: WeightMapper, model: keras.Model, prefix: str = "",
                                    input_convention: str = "imagenet") -> None:
    """Plans torchvision's ``efficientnet_b0`` (``features.{0..8}``, ``classifier.1``) into ``model``.

    torchvision pads symmetrically and uses batch-norm eps 1e-5, so ``model`` must be an
    ``efficientnet_b0_film(..., padding='symmetric', batch_norm_epsilon=1e-5)``; its ImageNet weights
    expect ImageNet-normalised inputs (``input_convention='imagenet'``).
    """
    layer = lambda name: find_layer(model, name)
    if layer("stem_conv_pad").padding != ((1, 1), (1, 1)) or abs(layer("stem_bn").epsilon - 1e-5) > 1e-9:
        raise WeightsError(f"torchvision's efficientnet_b0 pads symmetrically and uses batch-norm eps 1e-5; build "
                           f"{model.name!r} with efficientnet_b0_film(..., padding='symmetric', batch_norm_epsilon=1e-5).")
    blocks = []
    for stage, (_, repeats, _, _, expand_ratio, _) in enumerate(B0_BLOCKS):
        for repeat in range(repeats):
            name, block = f"block{stage + 1}{chr(97 + repeat)}_", f"{prefix}features.{stage + 1}.{repeat}.block"
            k = 1 if expand_ratio != 1 else 0
            expand = {"expand_conv": f"{block}.0.0", "expand_bn": f"{block}.0.1"} if k else {}
            blocks.append((name, {**expand, "dwconv": f"{block}.{k}.0", "bn": f"{block}.{k}.1",
                                  "se_reduce": f"{block}.{k + 1}.fc1", "se_expand": f"{block}.{k + 1}.fc2",
                                  "project_conv": f"{block}.{k + 2}.0", "project_bn": f"{block}.{k + 2}.1"}))
    _map_b0(mapper, model, input_convention, (f"{prefix}features.0.0", f"{prefix}features.0.1"), blocks,
            (f"{prefix}features.8.0", f"{prefix}features.8.1"), f"{prefix}classifier.1")
