"""The child side of the pipeline case's reference rows: Google's own Meta-Dataset pipeline
(google-research/meta-dataset, a checkout named by ``--reference_dir``) timed on the same records,
in its own fresh process, so the speed-up is a ratio measured side by side in one run.

Nothing of Google's code ships with lite_tf: the checkout is imported from the given folder. Two
stand-ins make it import under TensorFlow 2.16+: ``gin.tf`` (it needs ``tf.estimator``, which is
gone; the pipeline only uses ``gin.configurable``, which plain ``gin`` provides) and ``simclr``
(imported for SimCLR episodes, which are off here). Episodes use the reference's variable-way
variable-shot defaults (Meta-Dataset's ``EpisodeDescriptionConfig``: 5-50 ways, at most 500
support images, 10 queries per class), the split's classes, no ontology, ``image_size`` px.

Decoders (``reference_decoders``):
- ``standard``: Google's ``data_config.gin`` -- support images go through ``DataAugmentation``
  with jitter and Gaussian noise switched on at amount 0 (what its training runs use);
- ``plain``: no augmentation object at all, the cheapest the reference can be.
"""
from __future__ import annotations

import math
import os
import sys
import time
import types

from lite_tf.errors import ConfigError

DECODERS = ("standard", "plain")
_PIPELINE_FILE = os.path.join("meta_dataset", "data", "pipeline.py")

_STANDARD = [
    "support/ImageDecoder.data_augmentation = @support/DataAugmentation()",
    "support/DataAugmentation.enable_jitter = True",
    "support/DataAugmentation.jitter_amount = 0",
    "support/DataAugmentation.enable_gaussian_noise = True",
    "support/DataAugmentation.gaussian_noise_std = 0.0",
    "query/ImageDecoder.data_augmentation = @query/DataAugmentation()",
    "query/DataAugmentation.enable_jitter = False",
    "query/DataAugmentation.jitter_amount = 0",
    "query/DataAugmentation.enable_gaussian_noise = False",
    "query/DataAugmentation.gaussian_noise_std = 0.0",
]


def check_reference_dir(path: str) -> str:
    """The checkout's root (holding meta_dataset/data/pipeline.py), or a one-line ConfigError."""
    if not os.path.isfile(os.path.join(path, _PIPELINE_FILE)):
        raise ConfigError(f"--reference_dir {path!r} is not a google-research/meta-dataset checkout: "
                          f"expected {_PIPELINE_FILE} inside it.")
    return os.path.abspath(path)


def _import_reference(root: str):
    import gin

    sys.modules.setdefault("gin.tf", gin)
    simclr = types.ModuleType("simclr")
    simclr.data_util = types.ModuleType("simclr.data_util")
    sys.modules.setdefault("simclr", simclr)
    sys.modules.setdefault("simclr.data_util", simclr.data_util)
    sys.path.insert(0, root)
    from meta_dataset.data import config, dataset_spec, decoder, learning_spec, pipeline  # noqa: F401

    return config, dataset_spec, learning_spec, pipeline


def _episodes(iterator):
    """The reference's (episode tuple, source id) elements as dicts of what ``time_episodes`` counts."""
    for episode, _ in iterator:
        yield {"support_images": episode[0], "query_images": episode[3]}


def measure(spec: dict) -> dict:
    """Google's pipeline on ``spec['folders']`` (one fresh pipeline in this process)."""
    import gin

    from lite_tf import memory
    from lite_tf.bench.pipeline import time_episodes

    meter = memory.PeakMeter()
    started = time.perf_counter()
    config, dataset_spec, learning_spec, pipeline = _import_reference(spec["reference_dir"])
    bindings = ["process_episode.support_decoder = @support/ImageDecoder()",
                "process_episode.query_decoder = @query/ImageDecoder()",
                f"ImageDecoder.image_size = {int(spec['image_size'])}"]
    bindings += _STANDARD if spec["reference_decoders"] == "standard" else ["ImageDecoder.data_augmentation = None"]
    gin.parse_config(bindings)
    episode_config = config.EpisodeDescriptionConfig(
        num_ways=None, num_support=None, num_query=None, min_ways=5, max_ways_upper_bound=50, max_num_query=10,
        max_support_set_size=500, max_support_size_contrib_per_class=100, min_log_weight=math.log(0.5),
        max_log_weight=math.log(2), ignore_dag_ontology=True, ignore_bilevel_ontology=True,
        ignore_hierarchy_probability=0.0, simclr_episode_fraction=0.0)
    specs = [dataset_spec.load_dataset_spec(folder) for folder in spec["folders"]]
    split = getattr(learning_spec.Split, spec["split"].upper())
    if len(specs) == 1:
        dataset = pipeline.make_one_source_episode_pipeline(
            specs[0], use_dag_ontology=False, use_bilevel_ontology=False, split=split,
            episode_descr_config=episode_config, image_size=spec["image_size"])
    else:
        dataset = pipeline.make_multisource_episode_pipeline(
            specs, use_dag_ontology_list=[False] * len(specs), use_bilevel_ontology_list=[False] * len(specs),
            split=split, episode_descr_config=episode_config, image_size=spec["image_size"])
    iterator = _episodes(iter(dataset))
    for _ in range(spec["warmup"]):
        next(iterator)
    warmup = time.perf_counter() - started
    return {**time_episodes(iterator, spec["episodes"]), "warmup_s": warmup, **meter.read()}
