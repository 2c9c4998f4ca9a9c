"""Data for lite_tf, one job per module (data code never imports models or evaluation):

- ``metadataset/``: Meta-Dataset record sets (spec, records, store, sampling, plan, reading, pipeline);
- ``md_tfds.py``: Google's ``meta_dataset`` TFDS build read through the same episode pipeline;
- ``decode.py``: encoded image bytes -> square pixel tensors (every pipeline decodes through it);
- ``augment.py``: seeded per-image augmentation;
- ``orbit/``: ORBIT videos (index, annotations, protocol, task sampling, pipeline, generated folders);
- ``vtab/``: VTAB-v2 task definitions, label functions and the large-task reader;
- ``writing/``: record writing and dataset conversion (image folders, TFDS), checks and manifests;
- ``synthetic/``: generated data (``procedural``: learnable built-in classes; ``fake``: test records).
"""
