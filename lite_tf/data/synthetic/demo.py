"""The built-in demo data: every requested synthetic source written as a Meta-Dataset record set.

What ``lite_tf_make_demo_data`` and the quickstart call. Every source's folder is checked before
any is written, so a conflict (a folder holding a different dataset) writes nothing; sources already
complete with the same settings are skipped, interrupted ones completed (lite_tf/data/writing/writer.py).
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

from lite_tf.data.synthetic import procedural as synthetic
from lite_tf.errors import ConfigError


def make_demo_data(output_dir: str, sources: Sequence[str], image_size: int, classes_per_split: Sequence[int],
                   images_per_class: int, seed: int = 0, jpeg_quality: int = synthetic.DEFAULT_JPEG_QUALITY,
                   workers: Optional[int] = None, progress: bool = True) -> list:
    """Writes ``<output_dir>/<source>`` for every source; returns their WriteReports."""
    if not sources:
        raise ConfigError(f"--sources is empty; choose from {synthetic.available_sources()}.")
    plans = [synthetic.plan_synthetic_dataset(output_dir, source, image_size, classes_per_split,
                                              images_per_class, seed, jpeg_quality) for source in sources]
    for plan in plans:
        plan.state()  # raises writer.DatasetWriteError on a conflict, before anything is written
    workers = (os.cpu_count() or 1) if workers is None else workers
    return [plan.write(workers=workers, parallel="process", progress=progress) for plan in plans]


def _folder_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) if os.path.isdir(path) else 0


def summary(reports: Sequence, output_dir: str, seconds: float) -> str:
    """Each source's report, then the totals (images, MiB, time)."""
    total_images = sum(sum(r.spec.images_per_class.values()) for r in reports)
    total_bytes = sum(_folder_size(r.dataset_dir) for r in reports)
    return "\n".join([report.summary() for report in reports] + [
        f"\n{len(reports)} source(s), {total_images} images, {total_bytes / 2 ** 20:.1f} MiB in "
        f"{os.path.abspath(output_dir)}, {seconds:.1f} s.",
        "Each source folder is a Meta-Dataset record set (dataset_spec.json + <class_id>.tfrecords)."])
