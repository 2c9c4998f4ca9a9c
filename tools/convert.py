"""Converts image folders or TFDS image-classification datasets to Meta-Dataset records, and verifies them.

    # one sub-folder per class; 70/15/15 class split drawn with --seed
    lite_tf_convert --image_folder=/data/birds --output_dir=/data/records
    # class split from a file (JSON {"train": [...], "valid": [...], "test": [...]} or text with
    # "train:" / "valid:" / "test:" header lines followed by one class name per line)
    lite_tf_convert --image_folder=/data/birds --split_file=splits.txt --output_dir=/data/records
    # small greyscale images, stored losslessly in one channel; warn about images under 84 px
    lite_tf_convert --image_folder=/data/glyphs --image_format=png --channels=1 --target_size=84 ...
    # two-level (a superclass per class) or hierarchical (a parent map) spec
    lite_tf_convert --image_folder=/data/chars --superclass_file=alphabets.json ...
    lite_tf_convert --image_folder=/data/objects --parent_file=parents.tsv ...
    # an already prepared TFDS dataset (offline); --download allows downloading it first
    lite_tf_convert --tfds_name=oxford_flowers102 --tfds_data_dir=~/tensorflow_datasets \
        --output_dir=/data/records
    # check a finished set without writing (with the input flags: also whether it is stale)
    lite_tf_convert --verify --output_dir=/data/records --name=birds

Writes ``<output_dir>/<name>/{<class_id>.tfrecords, dataset_spec.json, lite_tf_manifest.json}``.
Class files are written atomically and the spec last. Running the same command again verifies
every class file (record count, checksums, labels, and whether its source files changed) and
rewrites the missing, damaged or stale ones; a folder holding a different dataset is refused.
Unreadable or non-image files stop the run with an error naming the file, unless
--skip_bad_images (they are then skipped, logged, and counted in the summary).
Errors print one line (``error: ...``) and exit 2; --verify exits 1 when a file is bad.
The work is in lite_tf/data/writing/request.py.
"""
from __future__ import annotations

import sys

from absl import flags, logging

from lite_tf import cli
from lite_tf.data.writing import convert

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("image_folder", None, "Input folder with one sub-folder of images per class.")
    flags.DEFINE_string("tfds_name", None, "Input TFDS dataset name (e.g. 'oxford_flowers102' or "
                        "'name/config:1.0.0').")
    flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir holding the prepared dataset (default: TFDS's "
                        "own).")
    flags.DEFINE_bool("download", False, "Allow TFDS to download and prepare the dataset (needs network).")
    flags.DEFINE_list("tfds_splits", None, "TFDS splits whose examples are pooled (default: all of them).")
    flags.DEFINE_string("image_key", None, "TFDS image feature (default: the only Image feature).")
    flags.DEFINE_string("label_key", None, "TFDS label feature (default: the only ClassLabel feature).")
    flags.DEFINE_integer("classes_per_pass", 0, "TFDS: classes collected per pass over the data (0: all in one "
                         "pass; set it when the dataset does not fit in memory).")
    flags.DEFINE_string("output_dir", None, "Records root; the dataset goes to <output_dir>/<name>.")
    flags.DEFINE_string("name", None, "Dataset name (default: the input folder's name or the TFDS name).")
    flags.DEFINE_list("split_fractions", [str(f) for f in convert.DEFAULT_SPLIT_FRACTIONS],
                      "Fractions of classes (superclasses with --superclass_file) in TRAIN,VALID,TEST "
                      "(ignored with --split_file).")
    flags.DEFINE_string("split_file", None, "JSON or text file naming the classes of each split (superclasses "
                        "with --superclass_file; classes or internal nodes with --parent_file).")
    flags.DEFINE_integer("seed", 0, "Seed of the class split drawn from --split_fractions.")
    flags.DEFINE_string("superclass_file", None, "Two-level spec: JSON {class: superclass} or 'class<TAB>"
                        "superclass' lines; superclasses are split, as Omniglot's alphabets.")
    flags.DEFINE_string("parent_file", None, "Hierarchical spec: JSON {child: parent or [parents]} or "
                        "'child<TAB>parent' lines; classes are the leaves of this DAG, as ImageNet's.")
    flags.DEFINE_bool("skip_bad_images", False, "Skip unreadable/non-image files (logged and counted) instead of "
                      "stopping with an error.")
    flags.DEFINE_string("image_format", "jpeg", "How re-encoded images are stored: 'jpeg' or 'png' (lossless).")
    flags.DEFINE_integer("channels", 3, "Channels stored: 3 (RGB) or 1 (greyscale; training still decodes 3).")
    flags.DEFINE_integer("target_size", None, "Image size training will use: warn when images are smaller.")
    flags.DEFINE_integer("max_side", None, "Shrink images whose longer side exceeds this many pixels.")
    flags.DEFINE_integer("jpeg_quality", convert.DEFAULT_JPEG_QUALITY, "Quality of images re-encoded as JPEG.")
    flags.DEFINE_integer("workers", 2, "Threads reading and checking images (image folders).")
    flags.DEFINE_bool("verify", False, "Check the finished set (every class file, the spec and, with the input "
                      "flags, whether it is stale) without writing; exit 1 naming each bad file.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")
    flags.mark_flag_as_required("output_dir")


def main(argv) -> int:
    cli.no_arguments(argv)
    import dataclasses

    from lite_tf.data.writing.request import ConvertRequest

    request = ConvertRequest(**{field.name: FLAGS[field.name].value for field in dataclasses.fields(ConvertRequest)})
    if FLAGS.verify:
        reports = request.verify()
        for report in reports:
            for line in report.lines():
                print(f"verify: {line}", file=sys.stdout if report.ok else sys.stderr)
        return 0 if all(report.ok for report in reports) else 1
    report = request.convert()
    print(report.summary())
    for warning in report.warnings:
        print(f"convert: warning: {warning}", file=sys.stderr)
    for path, why in report.skipped_images[1:]:
        logging.info("skipped %s: %s", path, why)
    return 0


def run():
    """Console-script entry point (lite_tf_convert)."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
