"""ResNet-18 in torchvision's naming (``conv1``, ``bn1``, ``layer{s}.{b}.conv1`` ..., ``fc``).

Maps onto lite_tf's ``resnet18_film`` / ``resnet18_film_84`` (same layout: bias-free convolutions,
explicit zero padding, batch-norm eps 1e-5). The ImageNet classifier ``fc`` is ignored (no top).
torchvision's ImageNet weights expect ImageNet-normalised inputs; lite_tf's ResNet takes images as
given ([-1, 1]), so features differ from torchvision's on the same pixels unless the caller
normalises them.
"""
from __future__ import annotations

from lite_tf.backbones.resnet import BLOCKS_PER_STAGE, STAGES
from lite_tf.weights.assign import WeightMapper


def map_torchvision_resnet18(mapper: WeightMapper, model, prefix: str = "") -> None:
    """Plans every weight of a lite_tf ResNet-18 from ``{prefix}conv1.weight`` etc."""
    layer = model.get_layer
    mapper.conv(layer("stem_conv"), f"{prefix}conv1")
    mapper.batch_norm(layer("stem_bn"), f"{prefix}bn1")
    for stage in range(len(STAGES)):
        for block in range(BLOCKS_PER_STAGE):
            keras_name, torch_name = f"layer{stage + 1}_{block}", f"{prefix}layer{stage + 1}.{block}"
            for index in (1, 2):
                mapper.conv(layer(f"{keras_name}_{index}_conv"), f"{torch_name}.conv{index}")
                mapper.batch_norm(layer(f"{keras_name}_{index}_bn"), f"{torch_name}.bn{index}")
            if any(l.name == f"{keras_name}_down_conv" for l in model.layers):
                mapper.conv(layer(f"{keras_name}_down_conv"), f"{torch_name}.downsample.0")
                mapper.batch_norm(layer(f"{keras_name}_down_bn"), f"{torch_name}.downsample.1")
    for suffix in ("weight", "bias"):
        mapper.ignore(f"{prefix}fc.{suffix}", "the ImageNet classifier; the backbone has no top")
