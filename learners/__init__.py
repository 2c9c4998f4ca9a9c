"""Built-in learner plugins. Each module registers its learner when imported; lite_tf loads them through
the ``lite_tf.learners`` entry points in setup.py (see lite_tf/registry.py)."""
