"""Plugin registry: learners, backbones, data sources and evaluators by name, each gin-configurable.

Plugins register themselves when their module is imported. Learners (the built-in ones in
``lite_tf.learners`` included) and any third-party plugin are found through the entry-point groups
``lite_tf.learners``, ``lite_tf.backbones``, ``lite_tf.sources`` and ``lite_tf.evaluators`` (setup.py
declares the built-in learners; ``pip install -e .`` installs them); those modules are imported on
the first lookup. The library's own backbones, sources and evaluators are imported directly. Gin
names are ``learners.<name>``, ``backbones.<name>``, ``sources.<name>`` and ``evaluators.<name>``.
"""
from __future__ import annotations

import importlib
import inspect
import logging
from importlib import metadata
from typing import Callable, Dict

import gin

from lite_tf.errors import ConfigError, LiteTfError

_KINDS = ("learner", "backbone", "source", "evaluator")
_REGISTRIES: Dict[str, Dict[str, Callable]] = {kind: {} for kind in _KINDS}
_PLUGINS_LOADED = {kind: False for kind in _KINDS}
# Library modules imported on first lookup (plugins outside lite_tf come through entry points).
_BUILTIN_MODULES = {
    "learner": (),
    "backbone": ("lite_tf.backbones",),
    "source": ("lite_tf.sources",),
    "evaluator": ("lite_tf.eval",),
}


class UnknownPluginError(LiteTfError, KeyError):
    """Raised for a name that no plugin registered; the message lists the known names."""

    def __str__(self):  # KeyError would quote the whole message.
        return self.args[0]


def _register(kind: str, name: str, obj: Callable, gin_configurable: bool) -> Callable:
    registry = _REGISTRIES[kind]
    if not isinstance(name, str) or not name:
        raise ConfigError(f"A {kind} name must be a non-empty string, got {name!r}.")
    if name in registry and registry[name] is not obj:
        raise ConfigError(
            f"A {kind} named {name!r} is already registered ({registry[name]!r}); pick another name."
        )
    registry[name] = _gin_factory(kind, name, obj) if gin_configurable else obj
    return obj


def _gin_factory(kind: str, name: str, obj: Callable) -> Callable:
    """A gin-configurable constructor for ``obj`` with its signature (gin name ``<kind>s.<name>``).

    Classes are wrapped rather than decorated: Keras layers inspect their own ``__init__``.
    """
    def make(*args, **kwargs):
        return obj(*args, **kwargs)

    make.__name__ = make.__qualname__ = name
    make.__doc__ = obj.__doc__
    # Without **kwargs in the signature gin rejects misspelt parameter names at parse time.
    signature = inspect.signature(obj)
    make.__signature__ = signature.replace(parameters=[
        p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD])
    make.plugin = obj
    return gin.configurable(name, module=f"{kind}s")(make)


def register_learner(name: str, gin_configurable: bool = True):
    """Class decorator: registers a Learner under ``name`` (gin name ``learners.<name>``)."""
    return lambda cls: _register("learner", name, cls, gin_configurable)


def register_backbone(name: str, gin_configurable: bool = True):
    """Decorator for a backbone factory ``f(image_size, **kwargs) -> keras.layers.Layer``."""
    return lambda fn: _register("backbone", name, fn, gin_configurable)


def register_source(name: str, gin_configurable: bool = True):
    """Class decorator: registers a lite_tf.source.Source under ``name`` (gin ``sources.<name>``)."""
    return lambda cls: _register("source", name, cls, gin_configurable)


def register_evaluator(name: str, gin_configurable: bool = True):
    """Class decorator: registers a lite_tf.eval.evaluator.Evaluator (gin ``evaluators.<name>``)."""
    return lambda cls: _register("evaluator", name, cls, gin_configurable)


def load_plugins() -> None:
    """Imports every built-in and entry-point plugin so gin files can bind them by name."""
    for kind in _KINDS:
        _load_plugins(kind)


def _load_plugins(kind: str) -> None:
    if _PLUGINS_LOADED[kind]:
        return
    _PLUGINS_LOADED[kind] = True
    for module in _BUILTIN_MODULES[kind]:
        importlib.import_module(module)
    for entry_point in metadata.entry_points(group=f"lite_tf.{kind}s"):
        try:
            entry_point.load()
        except Exception as error:  # A broken third-party plugin must not hide the others.
            logging.getLogger(__name__).error(
                "Could not load %s plugin %r from %s: %s", kind, entry_point.name, entry_point.value, error
            )


def _lookup(kind: str, name: str) -> Callable:
    _load_plugins(kind)
    registry = _REGISTRIES[kind]
    if not registry and kind == "learner":
        raise UnknownPluginError(
            f"Unknown learner {name!r}: no learner is registered at all. Learners load through the "
            f"'lite_tf.learners' entry points; install the package (pip install -e .) so they exist.")
    if name not in registry:
        known = ", ".join(sorted(registry)) or "(none)"
        raise UnknownPluginError(f"Unknown {kind} {name!r}. Known {kind}s: {known}.")
    return registry[name]


def get_learner(name: str) -> Callable:
    """The (gin-configurable) constructor of learner ``name``; unknown names list the known ones."""
    return _lookup("learner", name)


def get_backbone(name: str) -> Callable:
    """The (gin-configurable) backbone factory ``name``; unknown names list the known ones."""
    return _lookup("backbone", name)


def get_source(name: str) -> Callable:
    """The (gin-configurable) constructor of data source ``name``; unknown names list the known ones."""
    return _lookup("source", name)


def get_evaluator(name: str) -> Callable:
    """The (gin-configurable) constructor of evaluator ``name``; unknown names list the known ones."""
    return _lookup("evaluator", name)


def list_learners() -> list:
    _load_plugins("learner")
    return sorted(_REGISTRIES["learner"])


def list_backbones() -> list:
    _load_plugins("backbone")
    return sorted(_REGISTRIES["backbone"])


def list_sources() -> list:
    _load_plugins("source")
    return sorted(_REGISTRIES["source"])


def list_evaluators() -> list:
    _load_plugins("evaluator")
    return sorted(_REGISTRIES["evaluator"])
