"""Built-in learner plugins; importing this package registers them (see lite_tf.registry)."""
from learners import protonets  # noqa: F401
from learners import cnaps, finetuner, simple_cnaps  # noqa: F401
