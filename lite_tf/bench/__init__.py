"""The one benchmark harness (run it with ``python -m tools.benchmark``).

- ``harness``: settings, the cases (lite, learner, pipeline, orbit) and the run loop;
- ``runner`` / ``child``: one fresh process per measurement, killed or failed children reported;
- ``step`` / ``pipeline``: what a child measures; ``episodes``: the synthetic episode (tests use it);
- ``results``: the one result schema (JSON rows + Markdown), written atomically; ``targets``: the
  summary lines that say whether LITE's claims hold.
- ``gradient_study`` / ``training_study`` (shared bits in ``studies``): choosing h, LITE's gradient
  against the exact one and budgeted training runs across seeds (tools/gradient_study.py, training_study.py).
A new case is a spec builder in ``harness`` (each spec naming its child function as ``target``)
plus that child function; it reuses the runner, the schema and the summary.
"""
