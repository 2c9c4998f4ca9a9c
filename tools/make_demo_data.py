"""Generates the built-in synthetic few-shot datasets (no download): one record set per source.

    lite_tf_make_demo_data --output_dir=demo_data            # quickstart data, 224 px
    python -m tools.make_demo_data --image_size=84 --classes_per_split=40,10,10 --images_per_class=60

Writes ``<output_dir>/<source>/{<class_id>.tfrecords, dataset_spec.json}`` for every source, in
Meta-Dataset's format. Idempotent: sources already generated with the same settings are skipped,
interrupted ones are completed. It refuses (exit status 1, nothing written) when an output folder
holds a different dataset. Class files are written atomically and each spec last, so an interrupted
run never leaves a spec pointing at missing or half-written files.
"""
from __future__ import annotations

import os
import sys
import time

from absl import app, flags

from lite_tf.data.synthetic import procedural as synthetic
from lite_tf.data.writing import writer
from lite_tf.data.synthetic import procedural as synthetic


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> flags.FlagValues:
    """Defines this tool's flags (at run time, not import, so tools can share flag names in one process)."""
    fv = dict(flag_values=flag_values)
    flags.DEFINE_string("output_dir", "demo_data", "Folder that receives one sub-folder per source.", **fv)
    flags.DEFINE_integer("image_size", synthetic.DEFAULT_IMAGE_SIZE, "Side of the square images, in pixels.", **fv)
    flags.DEFINE_list("sources", synthetic.available_sources(),
                      f"Sources to generate, from {synthetic.available_sources()}.", **fv)
    flags.DEFINE_list("classes_per_split", [str(c) for c in synthetic.DEFAULT_CLASSES_PER_SPLIT],
                      "Classes in TRAIN,VALID,TEST of every source.", **fv)
    flags.DEFINE_integer("images_per_class", synthetic.DEFAULT_IMAGES_PER_CLASS, "Images in every class.", **fv)
    flags.DEFINE_integer("seed", 0, "Seed of the class prototypes and image variations.", **fv)
    flags.DEFINE_integer("jpeg_quality", synthetic.DEFAULT_JPEG_QUALITY, "JPEG quality of the stored images.",
                         **fv)
    flags.DEFINE_integer("workers", None, "Processes rendering classes in parallel (default: CPU count).", **fv)
    flags.DEFINE_bool("progress", True, "Show a progress bar per source.", **fv)
    return flag_values


def _folder_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) if os.path.isdir(path) else 0


def make_demo_data(output_dir: str, sources, image_size: int, classes_per_split, images_per_class: int,
                   seed: int = 0, jpeg_quality: int = synthetic.DEFAULT_JPEG_QUALITY, workers=None,
                   progress: bool = True) -> list:
    """Checks every source's folder first (so a conflict writes nothing), then writes them."""
    if not sources:
        raise ValueError(f"--sources is empty; choose from {synthetic.available_sources()}.")
    plans = [synthetic.plan_synthetic_dataset(output_dir, source, image_size, classes_per_split,
                                              images_per_class, seed, jpeg_quality) for source in sources]
    for plan in plans:
        plan.state()  # raises writer.DatasetWriteError on a conflict, before anything is written
    workers = (os.cpu_count() or 1) if workers is None else workers
    return [plan.write(workers=workers, parallel="process", progress=progress) for plan in plans]


def run(argv, FLAGS: flags.FlagValues = flags.FLAGS) -> int:
    """The tool's body on parsed flags; returns the exit status."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    start = time.time()
    try:
        classes = [int(c) for c in FLAGS.classes_per_split]
    except ValueError:
        raise app.UsageError(f"--classes_per_split must be integers TRAIN,VALID,TEST; got "
                             f"{','.join(FLAGS.classes_per_split)}.") from None
    try:
        reports = make_demo_data(FLAGS.output_dir, FLAGS.sources, FLAGS.image_size, classes,
                                 FLAGS.images_per_class, FLAGS.seed, FLAGS.jpeg_quality, FLAGS.workers,
                                 FLAGS.progress)
    except (ValueError, writer.DatasetWriteError) as error:
        print(f"make_demo_data: error: {error}", file=sys.stderr)
        return 1
    print()
    for report in reports:
        print(report.summary())
    total_images = sum(sum(r.spec.images_per_class.values()) for r in reports)
    total_bytes = sum(_folder_size(r.dataset_dir) for r in reports)
    print(f"\n{len(reports)} source(s), {total_images} images, {total_bytes / 2 ** 20:.1f} MiB in "
          f"{os.path.abspath(FLAGS.output_dir)}, {time.time() - start:.1f} s.")
    print("Each source folder is a Meta-Dataset record set (dataset_spec.json + <class_id>.tfrecords).")
    return 0


def main():
    """Console-script entry point (lite_tf_make_demo_data)."""
    define_flags()
    app.run(run)


if __name__ == "__main__":
    main()
