"""Generates the built-in synthetic few-shot datasets (no download): one record set per source.

    lite_tf_make_demo_data --output_dir=demo_data            # quickstart data, 224 px
    python -m tools.make_demo_data --image_size=84 --classes_per_split=40,10,10 --images_per_class=60

Writes ``<output_dir>/<source>/{<class_id>.tfrecords, dataset_spec.json}`` for every source, in
Meta-Dataset's format. Idempotent: sources already generated with the same settings are skipped,
interrupted ones are completed. It refuses (nothing written) when an output folder holds a
different dataset. Class files are written atomically and each spec last, so an interrupted run
never leaves a spec pointing at missing or half-written files. The work is in
lite_tf/data/synthetic/demo.py.
"""
from __future__ import annotations

import time

from absl import flags

from lite_tf import cli
from lite_tf.data.synthetic import procedural as synthetic

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("output_dir", "demo_data", "Folder that receives one sub-folder per source.")
    flags.DEFINE_integer("image_size", synthetic.DEFAULT_IMAGE_SIZE, "Side of the square images, in pixels.")
    flags.DEFINE_list("sources", synthetic.available_sources(),
                      f"Sources to generate, from {synthetic.available_sources()}.")
    flags.DEFINE_list("classes_per_split", [str(c) for c in synthetic.DEFAULT_CLASSES_PER_SPLIT],
                      "Classes in TRAIN,VALID,TEST of every source.")
    flags.DEFINE_integer("images_per_class", synthetic.DEFAULT_IMAGES_PER_CLASS, "Images in every class.")
    flags.DEFINE_integer("seed", 0, "Seed of the class prototypes and image variations.")
    flags.DEFINE_integer("jpeg_quality", synthetic.DEFAULT_JPEG_QUALITY, "JPEG quality of the stored images.")
    flags.DEFINE_integer("workers", None, "Processes rendering classes in parallel (default: CPU count).")
    flags.DEFINE_bool("progress", True, "Show a progress bar per source.")


def main(argv) -> int:
    cli.no_arguments(argv)
    from lite_tf.data.synthetic.demo import make_demo_data, summary

    start = time.time()
    reports = make_demo_data(FLAGS.output_dir, FLAGS.sources, FLAGS.image_size,
                             cli.integers(FLAGS.classes_per_split, "classes_per_split", "TRAIN,VALID,TEST"),
                             FLAGS.images_per_class, FLAGS.seed, FLAGS.jpeg_quality, FLAGS.workers, FLAGS.progress)
    print("\n" + summary(reports, FLAGS.output_dir, time.time() - start))
    return 0


def run():
    """Console-script entry point (lite_tf_make_demo_data)."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
