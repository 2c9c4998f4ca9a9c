"""The official LITE Simple CNAPs model (cambridge-mlg/LITE ``FewShotClassifier``) onto lite_tf.

State-dict prefixes and their lite_tf counterparts (of a built ``simple_cnaps`` / ``cnaps`` learner):
  set_encoder.pre_pooling_fn.layer{1..5}.{0: conv, 1: bn}  -> learner.set_encoder conv{i}, bn{i}
  feature_extractor.*  (EfficientNet-PyTorch names)         -> learner.backbone (efficientnet_b0_film)
  feature_adaptation_network.layers.{l}.{gamma,beta}_generators.0.{linear1,layernorm,linear2}
  feature_adaptation_network.layers.{l}.{gamma,beta}_regularizers.0
                                                           -> learner.film_generator, site l
The official code feeds the network ``x / 127.5 - 1`` without ImageNet normalisation, so the
backbone's input Normalization is set to pass [-1, 1] images through unchanged.
"""
from __future__ import annotations

from lite_tf.weights.assign import WeightMapper
from lite_tf.weights.efficientnet import map_efficientnet_pytorch_b0
from lite_tf.weights.state_dict import WeightsError

SET_ENCODER = "set_encoder.pre_pooling_fn"
FEATURE_EXTRACTOR = "feature_extractor."
ADAPTATION = "feature_adaptation_network.layers"


def map_set_encoder(mapper: WeightMapper, encoder, prefix: str = SET_ENCODER) -> None:
    """``{prefix}.layer{i+1}.0`` (conv) and ``.1`` (batch norm) -> ``conv{i}``, ``bn{i}``."""
    blocks = len([layer for layer in encoder.layers if layer.name.startswith("conv")])
    for block in range(blocks):
        mapper.conv(encoder.get_layer(f"conv{block}"), f"{prefix}.layer{block + 1}.0")
        mapper.batch_norm(encoder.get_layer(f"bn{block}"), f"{prefix}.layer{block + 1}.1")


def map_film_generator(mapper: WeightMapper, generator, prefix: str = ADAPTATION) -> None:
    """One official ``FilmLayerGenerator`` (one block) per FiLM site, in site order."""
    sites = len(generator.channels)
    official = {int(name[len(prefix) + 1:].split(".")[0]) for name in mapper.state if name.startswith(prefix + ".")}
    if official and max(official) + 1 != sites:
        raise WeightsError(f"{mapper.source}: the state dict has FiLM generators for {max(official) + 1} sites "
                           f"({prefix}.0..{max(official)}), the model's backbone has {sites}.")
    for site in range(sites):
        map_film_site(mapper, generator, site, f"{prefix}.{site}", "0")


def map_film_site(mapper: WeightMapper, generator, site: int, group: str, position: str) -> None:
    """FiLM site ``site``'s gamma and beta MLPs and regularisers, from the official names
    ``<group>.<gamma|beta>_generators.<position>.*`` and ``<group>.<gamma|beta>_regularizers.<position>``."""
    for part, mlps, regularizers in (("gamma", generator.gamma_generators, generator.gamma_regularizers),
                                     ("beta", generator.beta_generators, generator.beta_regularizers)):
        mlp = f"{group}.{part}_generators.{position}"
        mapper.dense(mlps[site].linear1, f"{mlp}.linear1")
        mapper.layer_norm(mlps[site].layernorm, f"{mlp}.layernorm")
        mapper.dense(mlps[site].linear2, f"{mlp}.linear2")
        mapper.vector(regularizers[site], f"{group}.{part}_regularizers.{position}")


def map_official_lite(mapper: WeightMapper, learner) -> None:
    """Plans the whole official LITE model into a built Simple CNAPs ``learner``."""
    for attribute in ("set_encoder", "backbone", "film_generator"):
        if not hasattr(learner, attribute):
            raise WeightsError(f"The official LITE model maps onto a built simple_cnaps learner (set "
                               f"encoder, FiLM backbone, FiLM generator); {type(learner).__name__} has no "
                               f"{attribute!r} (call learner.build_for(image_size) first).")
    if getattr(learner, "hypernet", None) is not None:
        raise WeightsError("The official LITE model is Simple CNAPs: build a simple_cnaps learner (a cnaps "
                           "learner's classifier hyper-network has no weights in it).")
    map_set_encoder(mapper, learner.set_encoder)
    map_efficientnet_pytorch_b0(mapper, learner.backbone, FEATURE_EXTRACTOR, "minus_one_one")
    map_film_generator(mapper, learner.film_generator)
