"""Data for lite_tf, one job per module:

- ``metadataset/``: Meta-Dataset record sets (spec, records, store, sampling, plan, reading, pipeline);
- ``decode.py``: encoded image bytes -> square pixel tensors (every pipeline decodes through it);
- ``augment.py``: seeded per-image augmentation;
- ``synthetic/``: generated data (``procedural``: learnable built-in classes; ``fake``: test records);
- ``orbit*.py``, ``writer.py``, ``convert.py``: ORBIT videos, record writing, dataset conversion.
"""
