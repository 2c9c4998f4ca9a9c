"""lite_tf: memory-efficient meta-learning (LITE) for few-shot image classification in Keras 3.

The public face: what a Python user and a plugin author need, importable from ``lite_tf`` directly.
Names load on first use (PEP 562), so ``import lite_tf`` alone does not start TensorFlow: the
launchers in ``lite_tf.tools`` quiet TensorFlow's start-up log before it loads.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    # the LITE step
    "EpisodicModel": "lite_tf.model",
    "LiteConfig": "lite_tf.lite",
    "SupportMapper": "lite_tf.lite",
    "chunked_map": "lite_tf.lite",
    "EPISODE_KEYS": "lite_tf.episode",
    "episode_signature": "lite_tf.episode",
    "validate_episode": "lite_tf.episode",
    # plugins: learners, backbones, data sources, evaluators
    "Learner": "lite_tf.learner",
    "Source": "lite_tf.source",
    "Evaluator": "lite_tf.eval.evaluator",
    "register_learner": "lite_tf.registry",
    "register_backbone": "lite_tf.registry",
    "register_source": "lite_tf.registry",
    "register_evaluator": "lite_tf.registry",
    "get_learner": "lite_tf.registry",
    "get_backbone": "lite_tf.registry",
    "get_source": "lite_tf.registry",
    "get_evaluator": "lite_tf.registry",
    "list_learners": "lite_tf.registry",
    "list_backbones": "lite_tf.registry",
    "list_sources": "lite_tf.registry",
    "list_evaluators": "lite_tf.registry",
    # errors: one base
    "LiteTfError": "lite_tf.errors",
    "ConfigError": "lite_tf.errors",
    "DataError": "lite_tf.errors",
    # experiments as functions (what the launchers call)
    "train": "lite_tf.experiment",
    "evaluate": "lite_tf.experiment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lite_tf' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
