"""Rematerialisation: run a functional Keras network in segments whose activations are recomputed
during back-propagation instead of being stored.

A LITE step stores the activations of every back-propagated image (the h subset images and the
queries) until the gradient is taken; for EfficientNet-B0 at 224 px that is tens of MB per image.
With remat on, each segment (about a block: cut only where one tensor crosses, so a residual
block or a squeeze-excite branch is never split) runs under ``tf.recompute_grad``: only the
segment boundaries are kept, and the backward pass recomputes one segment at a time. Values and
gradients are those of the plain call (float rounding aside); FiLM parameters and other model
inputs get their gradients through the segments' arguments.

Segments: the network's operations in execution order are cut at single-tensor points into
segments of balanced activation size; the segment count is the one whose predicted stored
activations (all boundaries, plus the largest segment recomputed at once with its gradients) are
smallest, about
sqrt(#operations) as in sqrt(n) checkpointing. The cuts land on block boundaries of
EfficientNet-B0, ResNet-18 and conv nets (or inside a block where its expansion is the largest). A nested
functional model (e.g. a keras.applications network inside a wrapper) is segmented in turn.

A call with no tape recording (the no-gradient chunked passes, evaluation) runs the plain graph.
Use :func:`enable` on a built model (``EpisodicModel`` does it for every network of its learner
when ``LiteConfig(remat=True)``, :func:`configure_learner`); :func:`call` runs one call segmented without changing the model.
"""
from __future__ import annotations

import math
import types
from typing import List, NamedTuple, Optional

import keras
import tensorflow as tf
from tensorflow.python.eager import record  # could_possibly_record: is any tape recording?

from lite_tf.errors import ConfigError

_ORIGINAL_CALL = "_lite_remat_original_call"


class Segment(NamedTuple):
    """Consecutive nodes of a functional graph; ``wrapped`` segments run under tf.recompute_grad."""
    nodes: list
    inputs: list  # ids of tensors produced outside the segment (or model inputs) that it reads
    outputs: list  # ids of tensors it produces that later segments (or the model's outputs) read
    wrapped: bool


def is_functional(layer) -> bool:
    return isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth") and bool(
        getattr(layer, "_operations", None))


def _ordered_nodes(model) -> list:
    """The non-input nodes in the order Keras runs them (deepest first)."""
    nodes = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        nodes += [n for n in model._nodes_by_depth[depth] if n.operation is not None and not n.is_input]
    return nodes


def _elements(tensor) -> int:
    return int(math.prod(d or 1 for d in tensor.shape[1:])) if tensor.shape is not None else 1


def _groups(nodes, sizes, last_use, target: float) -> list:
    """Greedy cuts: close a group at the first single-tensor point after ``target`` elements;
    a nested functional model is a group of its own."""
    groups, current, accumulated, live = [], [], 0, set()
    for index, node in enumerate(nodes):
        nested = is_functional(node.operation)
        if nested and current:
            groups.append(current)
            current, accumulated = [], 0
        current.append(node)
        accumulated += sizes[index]
        live -= {id(t) for t in node.input_tensors if last_use.get(id(t)) == index}
        live |= {id(t) for t in node.outputs if last_use.get(id(t), -1) > index}
        if nested or (len(live) <= 1 and accumulated >= target):
            groups.append(current)
            current, accumulated = [], 0
    if current:
        groups.append(current)
    return groups


def _stored(groups, sizes, index_of, last_use) -> int:
    """Predicted activation elements per image with these cuts: every boundary tensor, plus the
    largest segment recomputed at once."""
    boundaries, largest = 0, 0
    for group in groups:
        last = index_of[id(group[-1])]
        boundaries += sum(_elements(t) for node in group for t in node.outputs if last_use.get(id(t), -1) > last)
        if not is_functional(group[0].operation):
            largest = max(largest, sum(sizes[index_of[id(node)]] for node in group))
    return boundaries + 2 * largest  # its activations and their gradients


@tf.autograph.experimental.do_not_convert
def plan(model, segments: Optional[int] = None) -> List[Segment]:
    """Cuts ``model``'s graph into segments, only where exactly one tensor (besides the model's
    inputs) is live. ``segments`` asks for about that many of balanced activation size; by default
    the model's own cuts (``remat_cut_after``: names of the layers that end a segment) if it has
    them, else the count whose predicted stored activations (boundaries + the largest segment) are
    smallest.
    Nested functional models form their own (unwrapped) segments and are segmented when they run."""
    nodes = _ordered_nodes(model)
    if not nodes:
        raise ConfigError(f"remat: model {model.name!r} has no operations to segment.")
    last_use = {}
    for index, node in enumerate(nodes):
        for tensor in node.input_tensors:
            last_use[id(tensor)] = index
    for tensor in model.outputs:
        last_use[id(tensor)] = len(nodes)
    sizes = [sum(_elements(t) for t in node.outputs) for node in nodes]
    index_of = {id(node): index for index, node in enumerate(nodes)}
    total = sum(sizes)
    cut_after = getattr(model, "remat_cut_after", None)
    if segments is None and cut_after:  # the network's own cuts (layer names)
        missing = sorted(set(cut_after) - {node.operation.name for node in nodes})
        if missing:
            raise ConfigError(f"remat: {model.name!r}.remat_cut_after names {missing}, which are not layers of "
                              f"that network; expected names of its layers.")
        groups = [[]]
        for node in nodes:
            groups[-1].append(node)
            if node.operation.name in cut_after and node is not nodes[-1]:
                groups.append([])
    elif segments is not None:
        groups = _groups(nodes, sizes, last_use, total / segments)
    else:
        candidates = [_groups(nodes, sizes, last_use, total / count) for count in range(1, min(len(nodes), 64) + 1)]
        groups = min(candidates, key=lambda g: _stored(g, sizes, index_of, last_use))

    result = []
    for group in groups:
        produced = {id(t) for node in group for t in node.outputs}
        inputs, outputs = [], []
        for node in group:
            for tensor in node.input_tensors:
                if id(tensor) not in produced and id(tensor) not in inputs:
                    inputs.append(id(tensor))
        last = index_of[id(group[-1])]
        for node in group:
            for tensor in node.outputs:
                if last_use.get(id(tensor), -1) > last and id(tensor) not in outputs:
                    outputs.append(id(tensor))
        wrapped = not (len(group) == 1 and is_functional(group[0].operation))
        result.append(Segment(group, inputs, outputs, wrapped))
    return result


def _run_nodes(nodes, values: dict, training) -> None:
    """Runs ``nodes`` in order, reading and adding tensors in ``values`` (id of the symbolic tensor
    -> value), as keras.Functional does, passing ``training`` to layers that take it."""
    for node in nodes:
        args, kwargs = node.arguments.fill_in(values)
        operation = node.operation
        if training is not None and "training" in getattr(operation, "_call_context_args", {}):
            kwargs["training"] = training
        outputs = operation(*args, **kwargs)
        for symbolic, value in zip(node.outputs, tf.nest.flatten(outputs)):
            values[id(symbolic)] = value


def _plan_once(model, segments: Optional[int]) -> List[Segment]:
    """The model's plan for ``segments``, made on first use and kept on the model."""
    cache = model.__dict__.setdefault("_lite_remat_plans", {})
    if (segments,) not in cache:
        cache[(segments,)] = plan(model, segments)
    return cache[(segments,)]


@tf.autograph.experimental.do_not_convert  # plain Python over Keras nodes; AutoGraph would only slow tracing
def call(model, inputs, training=None, segments: Optional[int] = None):
    """``model(inputs, training=training)`` with every segment's activations recomputed in the
    backward pass; the plan is made once per model and segment count."""
    segments_plan = _plan_once(model, segments)
    flat = tf.nest.flatten(inputs)
    if len(flat) != len(model.inputs):
        raise ConfigError(f"remat: model {model.name!r} takes {len(model.inputs)} input(s); got {len(flat)}.")
    values = {id(symbolic): tf.convert_to_tensor(value) for symbolic, value in zip(model.inputs, flat)}
    for segment in segments_plan:
        if not segment.wrapped:
            _run_nodes(segment.nodes, values, training)
            continue

        def run(*arguments, segment=segment):
            local = dict(zip(segment.inputs, arguments))
            _run_nodes(segment.nodes, local, training)
            return [local[i] for i in segment.outputs]

        outputs = tf.recompute_grad(run)(*[values[i] for i in segment.inputs])
        values.update(zip(segment.outputs, tf.nest.flatten(outputs)))
    results = [values[id(t)] for t in model.outputs]
    return results[0] if len(results) == 1 else results


@tf.autograph.experimental.do_not_convert
def enable(model, segments: Optional[int] = None) -> None:
    """Makes every later call of ``model`` (a functional Keras model) run segmented (:func:`call`);
    nested functional models too. Weights, saving and values are unchanged."""
    if not is_functional(model):
        raise ConfigError(f"remat: {getattr(model, 'name', type(model).__name__)!r} is not a functional "
                          f"Keras model; remat segments functional graphs only.")
    if _ORIGINAL_CALL in model.__dict__:
        return
    _plan_once(model, segments)  # now, in plain Python: planning inside a traced step costs tens of seconds
    for node in _ordered_nodes(model):
        if is_functional(node.operation):
            enable(node.operation, segments)

    original = model.call

    @tf.autograph.experimental.do_not_convert
    def segmented(self, inputs, training=None, mask=None, **kwargs):
        if not record.could_possibly_record():  # no tape is recording: nothing would be stored
            return original(inputs, training=training, mask=mask, **kwargs)
        return call(self, inputs, training=training, segments=segments)

    object.__setattr__(model, _ORIGINAL_CALL, original)
    object.__setattr__(model, "call", types.MethodType(segmented, model))


@tf.autograph.experimental.do_not_convert
def disable(model) -> None:
    """Undoes :func:`enable` (nested models included)."""
    original = model.__dict__.get(_ORIGINAL_CALL)
    if original is None:
        return
    object.__setattr__(model, "call", original)
    del model.__dict__[_ORIGINAL_CALL]
    for node in _ordered_nodes(model):
        if is_functional(node.operation):
            disable(node.operation)


@tf.autograph.experimental.do_not_convert
def configure_learner(learner, on: bool, segments: Optional[int] = None) -> list:
    """Enables (``on``) or disables remat on every functional network the learner holds directly
    (backbone, set encoder, ...); returns their names. Takes effect in calls traced afterwards."""
    names = []
    for layer in learner._flatten_layers(include_self=False, recursive=False):
        if is_functional(layer):
            enable(layer, segments) if on else disable(layer)
            names.append(layer.name)
    return names
