"""Meta-Dataset record sets: ``spec`` (dataset_spec.json), ``records`` (TFRecord files), ``store``
(class files checked and indexed), ``sampling`` (episode rules, NumPy), ``plan`` (episodes planned
ahead as arrays), ``reading`` (records by TF ops), ``pipeline`` (``make_episode_dataset``)."""
