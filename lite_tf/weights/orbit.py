"""Official ORBIT models (microsoft/ORBIT-Dataset, tag results-neurips21-paper) onto lite_tf learners.

``FewShotRecogniser.state_dict()`` names, and their lite_tf counterparts:
  set_encoder.encoding_fn.layer{1..5}.{0,1}  -> learner.set_encoder conv{i}, bn{i}
  feature_extractor.*                        -> learner.backbone: EfficientNet-PyTorch names
                                                (efficientnet_b0_film / efficientnet_b0) or ResNet names
                                                (resnet18_film with stem_padding=1 / resnet18_film_84)
  feature_adapter.layers.{l}.{gamma,beta}_generators.{b}[.{j}].{linear1,layernorm,linear2},
  feature_adapter.layers.{l}.{gamma,beta}_regularizers.{b}[.{j}]
                                             -> learner.film_generator (EfficientNet: site l;
                                                ResNet: stage l, block b, layer j -> site 4l + 2b + j)
ORBIT feeds ImageNet-normalised frames to both networks, so the set encoder and a ResNet must be built
with ``input_normalization='imagenet'`` (the EfficientNet's own input normalisation is set here).
  classifier.{weight,bias}_processor.linear{1,2,3}  -> CNAPs' learner.hypernet (VersaClassifier)
"""
from __future__ import annotations

from lite_tf.backbones.resnet import BLOCKS_PER_STAGE, STAGES
from lite_tf.weights.assign import WeightMapper
from lite_tf.weights.efficientnet import find_layer, map_efficientnet_pytorch_b0
from lite_tf.weights.official import map_film_generator, map_film_site, map_set_encoder
from lite_tf.weights.resnet import map_torchvision_resnet18
from lite_tf.weights.state_dict import WeightsError

SET_ENCODER = "set_encoder.encoding_fn"
FEATURE_EXTRACTOR = "feature_extractor."
ADAPTER = "feature_adapter.layers"
LAYERS_PER_BLOCK = 2


def _has_layer(model, name: str) -> bool:
    try:
        find_layer(model, name)
        return True
    except WeightsError:
        return False


def _require_imagenet_input(model, what: str, binding: str) -> None:
    if not _has_layer(model, "input_normalization"):
        raise WeightsError(f"ORBIT feeds ImageNet-normalised frames, but the {what} {model.name!r} takes [-1, 1] "
                           f"images as they come; build it with {binding} = 'imagenet'.")


def map_resnet_film_generator(mapper: WeightMapper, generator, prefix: str = ADAPTER) -> None:
    """ORBIT's ResNet FilmLayerGenerator: one generator per stage, block and layer (site 4l + 2b + j)."""
    expected = len(STAGES) * BLOCKS_PER_STAGE * LAYERS_PER_BLOCK
    if len(generator.channels) != expected:
        raise WeightsError(f"{mapper.source}: an ORBIT ResNet-18 adapter has {expected} FiLM sites; the model's "
                           f"backbone has {len(generator.channels)}.")
    for stage in range(len(STAGES)):
        for block in range(BLOCKS_PER_STAGE):
            for layer in range(LAYERS_PER_BLOCK):
                site = (stage * BLOCKS_PER_STAGE + block) * LAYERS_PER_BLOCK + layer
                map_film_site(mapper, generator, site, f"{prefix}.{stage}", f"{block}.{layer}")


def map_orbit(mapper: WeightMapper, learner) -> None:
    """Plans an ORBIT Simple CNAPs / ProtoNets (EfficientNet-B0 or ResNet-18) model into a built learner."""
    backbone = getattr(learner, "backbone", None)
    if backbone is None:
        raise WeightsError(f"ORBIT models map onto a built learner with a backbone; {type(learner).__name__} has "
                           f"none (call learner.build_for(image_size) first).")
    efficientnet = _has_layer(backbone, "top_conv")
    if efficientnet:
        map_efficientnet_pytorch_b0(mapper, backbone, FEATURE_EXTRACTOR, "imagenet")
    else:
        _require_imagenet_input(backbone, "backbone", f"backbones.{backbone.name}.input_normalization")
        map_torchvision_resnet18(mapper, backbone, FEATURE_EXTRACTOR)
    if hasattr(learner, "film_generator"):
        _require_imagenet_input(learner.set_encoder, "set encoder", "backbones.set_encoder.input_normalization")
        map_set_encoder(mapper, learner.set_encoder, SET_ENCODER)
        if efficientnet:
            map_film_generator(mapper, learner.film_generator, ADAPTER)
        else:
            map_resnet_film_generator(mapper, learner.film_generator, ADAPTER)
    hypernet = getattr(learner, "hypernet", None)
    if hypernet is not None:
        for block in ("weight_processor", "bias_processor"):
            for index in (1, 2, 3):
                layer = getattr(getattr(hypernet, block), f"linear{index}")
                mapper.dense(layer, f"classifier.{block}.linear{index}")
