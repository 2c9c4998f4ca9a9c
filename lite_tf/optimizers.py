"""Keras's Adam with TensorFlow's fused Adam kernel: the same update in one op per variable.

Keras 3's ``Adam.update_step`` spells the update out in about 40 graph ops per variable (casts, the
bias-correction powers, the two moment updates, the step). A FiLM learner has ~270 trainable
variables, most of them small FiLM-generator weights, so the optimizer was a third of the LITE
step's graph: its tracing, Grappler's optimisation of it and its per-op launch cost dominated the
first step and cost ~0.9 s of every CPU step (README "Memory: ... start-up"). Here the update of a
dense gradient is ``tf.raw_ops.ResourceApplyAdam`` (the kernel behind TF's own Adam; CPU, GPU and
XLA), with the step-dependent scalars built once per update instead of once per variable. The
formula is Keras's (epsilon outside the square root, bias correction folded into the learning
rate), the slots are Keras's (``momentum``, ``velocity``: checkpoints load either way), and
everything else (gradient accumulation, clipping, EMA, loss scaling, tf.distribute) is Keras's
own code. ``amsgrad`` and sparse (``IndexedSlices``) gradients take Keras's path. One rounding
differs: the kernel forms ``1 - beta_2`` in float32 (0.00099998713 for 0.999) where Keras forms it in
double (0.001), so a step agrees to ~1e-5 relative and long trainings drift onto another trajectory
(TF's own Adam of TF 1 / tf.keras 2 used this kernel).
"""
from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="lite_tf")
class Adam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` (same arguments, same results to float rounding), fused per variable."""

    _step_scalars = None  # dtype -> the ResourceApplyAdam scalars of the update being built

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        self._step_scalars = {}
        try:
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._step_scalars = None

    def _scalars(self, dtype, learning_rate) -> dict:
        cached = self._step_scalars if self._step_scalars is not None else {}
        if dtype not in cached:
            step = tf.cast(self.iterations + 1, dtype)
            beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
            cached[dtype] = dict(beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
                                 lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
                                 epsilon=tf.cast(self.epsilon, dtype))
        return cached[dtype]

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        handle = variable.value.handle if isinstance(variable, keras.Variable) else variable.handle
        tf.raw_ops.ResourceApplyAdam(
            var=handle, m=self._momentums[index].value.handle, v=self._velocities[index].value.handle,
            grad=tf.cast(gradient, variable.dtype), **self._scalars(variable.dtype, learning_rate))


def get(identifier) -> keras.optimizers.Optimizer:
    """``keras.optimizers.get``, except that the name ``'adam'`` gives the fused :class:`Adam`."""
    if isinstance(identifier, str) and identifier.lower() == "adam":
        return Adam()
    return keras.optimizers.get(identifier)
