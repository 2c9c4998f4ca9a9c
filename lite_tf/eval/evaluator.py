"""The one shape every evaluation follows (Meta-Dataset episodes, ORBIT videos, later VTAB).

An ``Evaluator`` takes a model and a data source and returns results as a dict::

    {"split": str, "datasets": {name: {<metric>: float, "ci95": float | None, "episodes": int, ...}},
     "table": str}   # "table" is a Markdown table of the per-dataset rows

``write`` stores them atomically as <output>.json and <output>.md, so a results file exists only
when the evaluation finished.
"""
from __future__ import annotations

from typing import Optional, Sequence

from lite_tf import atomic


class Evaluator:
    """Scores ``model`` on ``source``'s ``split``, one row per dataset (sub-source)."""

    def evaluate(self, model, source, split: str, *, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None) -> dict:
        raise NotImplementedError

    def write(self, results: dict, output: str, title: str) -> None:
        """<output>.json (everything) and <output>.md (title and table), each written atomically."""
        atomic.write_json(output + ".json", results, indent=1)
        atomic.write_text(output + ".md", f"{title}\n\n{results['table']}\n")
