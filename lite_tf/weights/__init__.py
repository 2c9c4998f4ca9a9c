"""Importing PyTorch weights (official LITE / ORBIT models, ImageNet backbones) into lite_tf models.

    from lite_tf.weights import import_weights
    import_weights(learner, "official_lite", "meta-trained_lite_224.pt")   # a built simple_cnaps learner
    import_weights(backbone, "torchvision_resnet18", "resnet18.npz")        # a resnet18_film model

``checkpoint`` is a PyTorch file (needs the optional torch extra) or an ``.npz`` of
``param/<state-dict name>`` arrays, or an already loaded ``{name: array}`` dict. Every parameter is
accounted for: a missing, unused, mis-shaped or non-finite one raises :class:`WeightsError` naming it, and then
nothing is copied. The command-line tool is ``lite_tf_import_weights`` (tools/import_weights.py).
"""
from __future__ import annotations

import inspect
import os
from typing import Callable, Dict, Mapping, Union

from lite_tf.weights.assign import WeightMapper
from lite_tf.weights.efficientnet import map_efficientnet_pytorch_b0, map_torchvision_efficientnet_b0
from lite_tf.weights.official import map_official_lite
from lite_tf.weights.orbit import map_orbit
from lite_tf.weights.resnet import map_torchvision_resnet18
from lite_tf.weights.state_dict import StateDict, WeightsError, check_finite, load_state_dict

__all__ = ["SOURCES", "WeightsError", "import_weights", "load_state_dict"]

# source name -> (what it maps onto, planning function(mapper, target, **options))
SOURCES: Dict[str, tuple] = {
    "official_lite": ("a built simple_cnaps learner (efficientnet_b0_film, 224 px)",
                      lambda mapper, target: map_official_lite(mapper, target)),
    "orbit": ("a built simple_cnaps, cnaps or protonets learner as the ORBIT experiment configures it",
              lambda mapper, target: map_orbit(mapper, target)),
    "efficientnet_pytorch_b0": ("an EfficientNet-B0 with keras.applications layer names (efficientnet_b0_film)",
                                lambda mapper, target, input_convention="minus_one_one":
                                map_efficientnet_pytorch_b0(mapper, target, "", input_convention)),
    "torchvision_efficientnet_b0": ("an efficientnet_b0_film(padding='symmetric', batch_norm_epsilon=1e-5)",
                                    lambda mapper, target, input_convention="imagenet":
                                    map_torchvision_efficientnet_b0(mapper, target, "", input_convention)),
    "torchvision_resnet18": ("a resnet18_film / resnet18_film_84 model",
                             lambda mapper, target: map_torchvision_resnet18(mapper, target)),
}


def import_weights(target, source: str, checkpoint: Union[str, os.PathLike, Mapping], where: str = None,
                   **options) -> int:
    """Copies ``checkpoint``'s weights into ``target`` as ``source`` names them; returns the tensor count.

    ``where`` names an already loaded state dict's file in error messages.
    """
    if source not in SOURCES:
        raise WeightsError(f"Unknown weights source {source!r}; known: {', '.join(sorted(SOURCES))}.")
    if isinstance(checkpoint, Mapping):
        state, where = dict(checkpoint), where or f"{source} state dict"
        check_finite(state, where)
    else:
        state, where = load_state_dict(checkpoint), os.fspath(checkpoint)
    mapper = WeightMapper(state, where)
    plan: Callable = SOURCES[source][1]
    accepted = [name for name in inspect.signature(plan).parameters][2:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise WeightsError(f"Weights source {source!r} takes the options {accepted or 'none'}; got {unknown}.")
    plan(mapper, target, **options)
    return mapper.commit()
