"""Mixed precision for a Learner: the per-image maps in low precision, everything set-level in float32.

The backbone (and a FiLM learner's set encoder) run once per image, so they are where bfloat16 /
float16 saves memory and time; covariances, Cholesky factors, hyper-networks, prototypes and
distances, and a FineTuner's head fit are small and numerically delicate, so they stay float32.
A backbone's output layers are set to float32 too, so features leave it in float32.
"""
from __future__ import annotations

from typing import Optional

import keras

from lite_tf.errors import ConfigError

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
PER_IMAGE_MAPS = ("backbone", "set_encoder")  # Learner attributes mapped over every image


def resolve_policy(name: Optional[str]) -> str:
    """``name``, or the Keras global dtype policy's when None; one of POLICIES."""
    name = keras.config.dtype_policy().name if name is None else name
    if name not in POLICIES:
        raise ConfigError(f"EpisodicModel.dtype_policy {name!r} is not one of {POLICIES}.")
    return name


def _output_layers(model) -> list:
    outputs = getattr(model, "outputs", None)
    if not outputs:
        raise ConfigError(f"Mixed precision needs functional backbones (their output layers are set to "
                          f"float32); {getattr(model, 'name', model)!r} has no symbolic outputs.")
    return [tensor._keras_history.operation for tensor in outputs]


def apply_policy(learner: keras.layers.Layer, policy: str) -> None:
    """Sets ``policy`` on the learner's per-image maps and float32 on every other layer."""
    for layer in learner._flatten_layers(include_self=True):
        layer.dtype_policy = "float32"
    if policy == "float32":
        return
    for attribute in PER_IMAGE_MAPS:
        model = getattr(learner, attribute, None)
        if model is None:
            continue
        for layer in model._flatten_layers(include_self=True):
            layer.dtype_policy = policy
        for layer in _output_layers(model):
            layer.dtype_policy = "float32"


def is_float16(policy: str) -> bool:
    """float16 has too few exponent bits for small gradients: it needs loss scaling."""
    return policy == "mixed_float16"
