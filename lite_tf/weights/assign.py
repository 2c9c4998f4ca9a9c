"""Copying named PyTorch tensors into Keras layers, in Keras layouts, with every name accounted for.

A :class:`WeightMapper` is given a state dict and fills a plan of (Keras variable, value) pairs, one
layer at a time (``conv``, ``depthwise``, ``dense``, ``batch_norm``, ``layer_norm``, ``vector``).
``commit()`` assigns nothing unless the whole plan fits: every parameter the model needs was found
with the right shape, and every parameter of the state dict was used or explicitly ``ignore``d
with a reason. Each failure names the parameter, so a renamed or missing tensor is never skipped.

Layouts: conv [out, in, kh, kw] -> [kh, kw, in, out]; depthwise [C, 1, kh, kw] -> [kh, kw, C, 1];
linear [out, in] -> [in, out]; batch norm weight, bias, running_mean, running_var -> gamma, beta,
moving_mean, moving_variance; layer norm weight, bias -> gamma, beta.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from lite_tf.weights.state_dict import StateDict, WeightsError

MAX_NAMES_SHOWN = 8


def _names(names: Sequence[str]) -> str:
    names = sorted(names)
    shown = ", ".join(repr(n) for n in names[:MAX_NAMES_SHOWN])
    return shown + (f", ... ({len(names)} in all)" if len(names) > MAX_NAMES_SHOWN else "")


class WeightMapper:
    """Plans the copy of ``state`` into Keras variables; ``source`` names the file in errors."""

    def __init__(self, state: StateDict, source: str):
        self.state = dict(state)
        self.source = source
        self.used: Dict[str, str] = {}
        self.missing: List[str] = []
        self.problems: List[str] = []
        self.problem_names: set = set()
        self.plan: List[Tuple[object, np.ndarray]] = []
        self.finalizers: List[object] = []

    # ------------------------------------------------------------------ primitives
    def take(self, name: str, variable, transform=None) -> None:
        """Plans ``variable <- transform(state[name])``; records a missing name or a wrong shape."""
        if name not in self.state:
            self.missing.append(name)
            return
        if name in self.used:
            self.problems.append(f"{name!r} is mapped twice ({self.used[name]} and {variable.path})")
            return
        value = self.state[name]
        if transform is not None:
            if value.ndim != transform[1]:
                self.problem_names.add(name)
                self.problems.append(f"{name!r} has shape {list(value.shape)}, expected a {transform[1]}-d tensor "
                                     f"for {variable.path} {list(variable.shape)}")
                return
            value = transform[0](value)
        if tuple(value.shape) != tuple(variable.shape):
            self.problem_names.add(name)
            self.problems.append(f"{name!r} has shape {list(self.state[name].shape)}, which gives "
                                 f"{list(value.shape)} but {variable.path} is {list(variable.shape)}")
            return
        self.used[name] = variable.path
        self.plan.append((variable, value))

    def ignore(self, name: str, reason: str) -> None:
        """Marks ``name`` as deliberately not copied (e.g. an ImageNet classifier a no-top backbone lacks)."""
        if name in self.state:
            self.used[name] = f"ignored: {reason}"

    def fixed(self, variable, value) -> None:
        """Plans a value that is not in the state dict (e.g. an input normalisation the source did in code)."""
        self.plan.append((variable, np.asarray(value, np.float32)))

    def after_commit(self, fn) -> None:
        """Runs ``fn()`` once every variable is assigned (e.g. a Normalization layer's ``finalize_state``)."""
        self.finalizers.append(fn)

    def has(self, name: str) -> bool:
        return name in self.state

    # ------------------------------------------------------------------ layers
    def conv(self, layer, prefix: str) -> None:
        self.take(f"{prefix}.weight", layer.kernel, CONV)
        if getattr(layer, "use_bias", False):
            self.take(f"{prefix}.bias", layer.bias)

    def depthwise(self, layer, prefix: str) -> None:
        self.take(f"{prefix}.weight", layer.kernel, DEPTHWISE)
        if getattr(layer, "use_bias", False):
            self.take(f"{prefix}.bias", layer.bias)

    def dense(self, layer, prefix: str) -> None:
        self.take(f"{prefix}.weight", layer.kernel, LINEAR)
        if getattr(layer, "use_bias", False):
            self.take(f"{prefix}.bias", layer.bias)

    def batch_norm(self, layer, prefix: str) -> None:
        for suffix, variable in zip(("weight", "bias", "running_mean", "running_var"),
                                    (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)):
            self.take(f"{prefix}.{suffix}", variable)

    def layer_norm(self, layer, prefix: str) -> None:
        self.take(f"{prefix}.weight", layer.gamma)
        self.take(f"{prefix}.bias", layer.beta)

    def vector(self, variable, name: str) -> None:
        self.take(name, variable)

    # ------------------------------------------------------------------ finish
    def commit(self) -> int:
        """Checks the plan, then assigns every variable; returns the number of tensors copied."""
        unused = [name for name in self.state if name not in self.used and name not in self.problem_names]
        errors = []
        if self.missing:
            errors.append(f"missing from the state dict: {_names(self.missing)}")
        if self.problems:
            errors.append("; ".join(self.problems[:MAX_NAMES_SHOWN]))
        if unused:
            errors.append(f"not used by the model: {_names(unused)}")
        if errors:
            raise WeightsError(f"{self.source}: " + ". ".join(errors) + ". Nothing was copied.")
        for variable, value in self.plan:
            variable.assign(value.astype(np.float32))
        for fn in self.finalizers:
            fn()
        return len(self.plan)


CONV = (lambda w: np.transpose(w, (2, 3, 1, 0)), 4)
DEPTHWISE = (lambda w: np.transpose(w, (2, 3, 0, 1)), 4)
LINEAR = (lambda w: np.transpose(w), 2)
