"""Evaluation: the one ``Evaluator`` shape (evaluator.py) and the built-in evaluators, registered as
plugins on import: ``episodes`` (Meta-Dataset test episodes), ``orbit`` (ORBIT videos) and
``large_task`` (VTAB+MD). ``lite_tf.experiment.evaluate`` is the only layer above this package."""
from lite_tf.eval import episodes, large_task, orbit_evaluation  # noqa: F401  (registers the evaluators)
