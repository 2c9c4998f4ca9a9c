"""The pipeline cases: records/folders to read (given or generated), and the child side that
times a pipeline: episodes (or ORBIT tasks) per second, images per second and per CPU-second.

Wall-clock rates on a shared machine depend on the other load; images per CPU-second (the child's
user + system time) depends much less, and times the number of free cores bounds the rate.
"""
from __future__ import annotations

import os
import time

import numpy as np

from lite_tf.errors import DataError

SPEC_FILE = "dataset_spec.json"


def record_folders(records_dir: str) -> list:
    """The dataset folders of a records folder: itself if it holds a spec, else its sub-folders that do."""
    if not os.path.isdir(records_dir):
        raise DataError(f"--records_dir {records_dir!r} is not a folder.")
    if os.path.exists(os.path.join(records_dir, SPEC_FILE)):
        return [records_dir]
    folders = sorted(os.path.join(records_dir, name) for name in os.listdir(records_dir)
                     if os.path.exists(os.path.join(records_dir, name, SPEC_FILE)))
    if not folders:
        raise DataError(f"--records_dir {records_dir!r} holds no {SPEC_FILE}, nor do its sub-folders.")
    return folders


def generate_records(root: str, sources: int, classes: int, images_per_class: int, record_size: int) -> list:
    """``sources`` flat datasets of ``classes`` TRAIN classes of random-field JPEGs; complete ones are reused."""
    from lite_tf.data.synthetic import fake

    folders = []
    for i in range(sources):
        folder = os.path.join(root, f"source_{i}")
        if not os.path.exists(os.path.join(folder, SPEC_FILE)):  # the spec is written last
            spec = fake.flat_toy_spec(f"source_{i}", folder, classes=(classes, 0, 0), images=images_per_class)
            fake.write_fake_dataset(spec, folder, image_size=record_size, seed=i)
        folders.append(folder)
    return folders


def generate_orbit(root: str, frame_size: int, frames_per_video: int) -> str:
    """A small generated ORBIT folder (4 train users x 5 objects), reused when present."""
    from lite_tf.data.orbit.synthetic import make_orbit_folder

    if not os.path.isdir(os.path.join(root, "train")):
        make_orbit_folder(root, users={"train": 4}, objects_per_user=5, clean_videos=4, clutter_videos=2,
                          frames_per_video=frames_per_video, frame_size=frame_size)
    return root


def time_episodes(iterator, count: int) -> dict:
    """Rates over ``count`` episodes of ``iterator`` (dicts with support_images / query_images); images
    are frames (a set of clips [clips, T, H, W, 3] counts clips x T)."""
    frames = lambda images: int(np.prod(images.shape[:-3]))
    images = support = 0
    cpu_start, start = sum(os.times()[:2]), time.perf_counter()
    for _ in range(count):
        episode = next(iterator)
        n = frames(episode["support_images"])
        images += n + frames(episode["query_images"])
        support += n
    seconds, cpu_seconds = time.perf_counter() - start, sum(os.times()[:2]) - cpu_start
    return {"episodes_per_s": count / seconds, "images_per_s": images / seconds,
            "images_per_cpu_s": images / max(cpu_seconds, 1e-9), "cpu_cores_busy": cpu_seconds / seconds,
            "mean_images_per_episode": images / count, "mean_support_per_episode": support / count,
            "seconds": seconds}


def measure(spec: dict) -> dict:
    """Meta-Dataset episodes from ``spec['folders']`` (one fresh pipeline in this process)."""
    import tensorflow as tf

    from lite_tf import memory
    from lite_tf.data.metadataset import pipeline

    meter = memory.PeakMeter()  # the pipeline's own memory, TensorFlow itself excluded
    started = time.perf_counter()
    cache = {} if spec.get("decoded_cache", True) else {"decoded_cache_bytes": 0}
    dataset = pipeline.make_episode_dataset(spec["folders"], spec["split"], image_size=spec["image_size"],
                                            seed=spec["seed"], image_dtype=getattr(tf, spec["image_dtype"]), **cache)
    iterator = iter(dataset)
    for _ in range(spec["warmup"]):
        next(iterator)
    warmup = time.perf_counter() - started
    return {**time_episodes(iterator, spec["episodes"]), "warmup_s": warmup, **meter.read()}


def measure_orbit(spec: dict) -> dict:
    """ORBIT user-centric training tasks from ``spec['orbit_dir']`` (index, sampling, parallel decode)."""
    import dataclasses

    from lite_tf import memory
    from lite_tf.data.orbit import NEURIPS21, orbit_train_dataset

    meter = memory.PeakMeter()
    started = time.perf_counter()
    root = spec["orbit_dir"]
    protocol = dataclasses.replace(NEURIPS21, frame_subsample_factor=spec["subsample_factor"])
    dataset = orbit_train_dataset(root, frame_size=spec["image_size"], protocol=protocol,
                                  num_tasks=spec["episodes"] + 1,
                                  cache_dir=os.path.join(root, ".cache"), image_dtype=spec["image_dtype"])
    iterator = iter(dataset)
    next(iterator)  # warm-up: index, tracing, thread pools
    warmup = time.perf_counter() - started
    return {**time_episodes(iterator, spec["episodes"]), "warmup_s": warmup, **meter.read()}
