"""Multiply-accumulate (MAC) counts of traced TensorFlow graphs: the one MAC counter of lite_tf.

Used for a network's per-image cost (``image_macs``, e.g. a learner's personalisation cost) and a
learner's adaptation cost (``PersonalizationMacs``).

Counts the ops that dominate convolutional few-shot models (Conv2D, DepthwiseConv2dNative, MatMul,
BatchMatMul*) from their static shapes in a traced graph; element-wise ops are not counted (the
usual MACs convention, as in the ORBIT reference counter). Ops inside nested control-flow bodies are
not counted, so traces are made with every chunk in one piece.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import tensorflow as tf

from lite_tf.errors import ConfigError
from lite_tf.lite import LiteConfig, SupportMapper


def _size(shape) -> int:
    dims = shape.as_list()
    if any(d is None for d in dims):
        raise ConfigError(f"MAC counting needs static shapes; got {shape}.")
    return int(np.prod(dims)) if dims else 1


def op_macs(op) -> int:
    kind = op.type
    if kind in ("Conv2D", "Conv2DBackpropInput"):
        kh, kw, cin, _ = op.inputs[1].shape.as_list()
        return _size(op.outputs[0].shape) * kh * kw * cin
    if kind == "DepthwiseConv2dNative":
        kh, kw, _, _ = op.inputs[1].shape.as_list()
        return _size(op.outputs[0].shape) * kh * kw
    if kind == "MatMul":
        a = op.inputs[0].shape.as_list()
        inner = a[0] if op.get_attr("transpose_a") else a[1]
        return _size(op.outputs[0].shape) * inner
    if kind in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a = op.inputs[0].shape.as_list()
        inner = a[-2] if op.get_attr("adj_x") else a[-1]
        return _size(op.outputs[0].shape) * inner
    return 0


def graph_macs(graph) -> int:
    """MACs of one run of ``graph`` (and of functions it calls directly)."""
    total = 0
    for op in graph.get_operations():
        total += op_macs(op)
        if op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            name = op.get_attr("f").name
            function = graph._get_function(name) if hasattr(graph, "_get_function") else None
            if function is not None and hasattr(function, "graph"):
                total += graph_macs(function.graph)
    return total


def function_macs(fn, *input_specs: tf.TensorSpec) -> int:
    """MACs of one call of ``fn`` on inputs of the given (static) specs."""
    traced = tf.function(fn, input_signature=list(input_specs), autograph=False)
    return graph_macs(traced.get_concrete_function().graph)


def image_macs(fn, image_size: int) -> int:
    """MACs of ``fn`` (e.g. a backbone) on one [1, image_size, image_size, 3] image."""
    return function_macs(fn, tf.TensorSpec([1, image_size, image_size, 3], tf.float32))


def learner_call_macs(learner, image_size: int, support_size: int, way: int, query_size: int) -> int:
    """MACs of one inference call of ``learner`` on a task of the given sizes."""
    labels = tf.constant(np.arange(support_size) % way, tf.int32)
    config = LiteConfig(mode="inference", chunk_size=support_size)
    spec = lambda n: tf.TensorSpec([n, image_size, image_size, 3], tf.float32)

    @tf.function(input_signature=[spec(support_size), spec(query_size)], autograph=False)
    def call(support, query):
        mapper = SupportMapper(config, support_size, training=False)
        mapper.start_batch()
        # A constant way keeps class-level shapes static in the trace.
        return learner(support, labels, query, tf.constant(way, tf.int32), mapper=mapper, training=False)

    return graph_macs(call.get_concrete_function().graph)


class PersonalizationMacs:
    """MACs to adapt ``learner`` to a task of N context frames and ``way`` objects.

    The adaptation cost is a call's MACs less its per-query cost (difference of 2- and 1-query
    traces). It is fitted as a + b*N + c*way from three small traces: exact for learners whose
    adaptation is linear in the context size and the way (ProtoNets, CNAPs, Simple CNAPs: per-frame
    networks, per-class pooling, per-class heads and inverses).
    """

    def __init__(self, learner, image_size: int):
        self.learner, self.image_size = learner, image_size
        self._coefficients = None
        self.per_query_macs = None

    def _adapt(self, support_size: int, way: int) -> Tuple[int, int]:
        one = learner_call_macs(self.learner, self.image_size, support_size, way, 1)
        two = learner_call_macs(self.learner, self.image_size, support_size, way, 2)
        return one - (two - one), two - one

    def coefficients(self) -> Dict[str, float]:
        if self._coefficients is None:
            a22, per_query = self._adapt(2, 2)
            a42, _ = self._adapt(4, 2)
            a44, _ = self._adapt(4, 4)
            per_frame, per_way = (a42 - a22) / 2, (a44 - a42) / 2
            self._coefficients = {"fixed": a22 - 2 * per_frame - 2 * per_way, "per_context_frame": per_frame,
                                  "per_object": per_way}
            self.per_query_macs = per_query
        return self._coefficients

    def __call__(self, support_size: int, way: int) -> int:
        c = self.coefficients()
        return int(round(c["fixed"] + c["per_context_frame"] * support_size + c["per_object"] * way))
