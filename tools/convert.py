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
Errors print one line (``convert: error: ...``) and exit 1; --verify exits 1 when a file is bad.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.writing import check, convert, images
from lite_tf.errors import ConfigError, LiteTfError


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> flags.FlagValues:
    """Defines this tool's flags (at run time, not import, so tools can share flag names in one process)."""
    fv = dict(flag_values=flag_values)
    flags.DEFINE_string("image_folder", None, "Input folder with one sub-folder of images per class.", **fv)
    flags.DEFINE_string("tfds_name", None, "Input TFDS dataset name (e.g. 'oxford_flowers102' or "
                        "'name/config:1.0.0').", **fv)
    flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir holding the prepared dataset (default: TFDS's "
                        "own).", **fv)
    flags.DEFINE_bool("download", False, "Allow TFDS to download and prepare the dataset (needs network).", **fv)
    flags.DEFINE_list("tfds_splits", None, "TFDS splits whose examples are pooled (default: all of them).", **fv)
    flags.DEFINE_string("image_key", None, "TFDS image feature (default: the only Image feature).", **fv)
    flags.DEFINE_string("label_key", None, "TFDS label feature (default: the only ClassLabel feature).", **fv)
    flags.DEFINE_integer("classes_per_pass", 0, "TFDS: classes collected per pass over the data (0: all in one "
                         "pass; set it when the dataset does not fit in memory).", **fv)
    flags.DEFINE_string("output_dir", None, "Records root; the dataset goes to <output_dir>/<name>.", **fv)
    flags.DEFINE_string("name", None, "Dataset name (default: the input folder's name or the TFDS name).", **fv)
    flags.DEFINE_list("split_fractions", [str(f) for f in convert.DEFAULT_SPLIT_FRACTIONS],
                      "Fractions of classes (superclasses with --superclass_file) in TRAIN,VALID,TEST "
                      "(ignored with --split_file).", **fv)
    flags.DEFINE_string("split_file", None, "JSON or text file naming the classes of each split (superclasses "
                        "with --superclass_file; classes or internal nodes with --parent_file).", **fv)
    flags.DEFINE_integer("seed", 0, "Seed of the class split drawn from --split_fractions.", **fv)
    flags.DEFINE_string("superclass_file", None, "Two-level spec: JSON {class: superclass} or 'class<TAB>"
                        "superclass' lines; superclasses are split, as Omniglot's alphabets.", **fv)
    flags.DEFINE_string("parent_file", None, "Hierarchical spec: JSON {child: parent or [parents]} or "
                        "'child<TAB>parent' lines; classes are the leaves of this DAG, as ImageNet's.", **fv)
    flags.DEFINE_bool("skip_bad_images", False, "Skip unreadable/non-image files (logged and counted) instead of "
                      "stopping with an error.", **fv)
    flags.DEFINE_string("image_format", "jpeg", "How re-encoded images are stored: 'jpeg' or 'png' (lossless).",
                        **fv)
    flags.DEFINE_integer("channels", 3, "Channels stored: 3 (RGB) or 1 (greyscale; training still decodes 3).",
                         **fv)
    flags.DEFINE_integer("target_size", None, "Image size training will use: warn when images are smaller.",
                         **fv)
    flags.DEFINE_integer("max_side", None, "Shrink images whose longer side exceeds this many pixels.", **fv)
    flags.DEFINE_integer("jpeg_quality", convert.DEFAULT_JPEG_QUALITY, "Quality of images re-encoded as JPEG.",
                         **fv)
    flags.DEFINE_integer("workers", 2, "Threads reading and checking images (image folders).", **fv)
    flags.DEFINE_bool("verify", False, "Check the finished set (every class file, the spec and, with the input "
                      "flags, whether it is stale) without writing; exit 1 naming each bad file.", **fv)
    flags.DEFINE_bool("progress", True, "Show a progress bar.", **fv)
    flags.mark_flag_as_required("output_dir", flag_values=flag_values)
    return flag_values


def _options(FLAGS) -> dict:
    """Every conversion option, checked before anything is read or written."""
    try:
        fractions = [float(f) for f in FLAGS.split_fractions]
    except ValueError:
        raise ConfigError(f"--split_fractions must be numbers TRAIN,VALID,TEST; got "
                          f"{','.join(FLAGS.split_fractions)}.") from None
    if FLAGS.target_size is not None and FLAGS.target_size < 1:
        raise ConfigError(f"--target_size must be a positive number of pixels; got {FLAGS.target_size}.")
    if FLAGS.workers < 1:
        raise ConfigError(f"--workers must be at least 1; got {FLAGS.workers}.")
    if FLAGS.classes_per_pass < 0:
        raise ConfigError(f"--classes_per_pass must be 0 (one pass) or positive; got {FLAGS.classes_per_pass}.")
    for flag in ("split_file", "superclass_file", "parent_file"):
        path = getattr(FLAGS, flag)
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"--{flag}={path}: no such file.")
    images.ImageOptions(FLAGS.image_format, FLAGS.channels, FLAGS.max_side, FLAGS.jpeg_quality)  # checks them
    return dict(split_fractions=fractions, split_file=FLAGS.split_file, seed=FLAGS.seed,
                skip_bad_images=FLAGS.skip_bad_images, max_side=FLAGS.max_side, jpeg_quality=FLAGS.jpeg_quality,
                image_format=FLAGS.image_format, channels=FLAGS.channels, superclass_file=FLAGS.superclass_file,
                parent_file=FLAGS.parent_file)


def _plan(FLAGS, common: dict):
    """(plan, before_load) for the input the flags name."""
    if FLAGS.image_folder is not None:
        return convert.plan_image_folder(FLAGS.image_folder, FLAGS.output_dir, FLAGS.name, **common), None
    return convert.plan_tfds(FLAGS.tfds_name, FLAGS.output_dir, FLAGS.tfds_data_dir, FLAGS.download,
                             tfds_splits=FLAGS.tfds_splits, image_key=FLAGS.image_key, label_key=FLAGS.label_key,
                             dataset_name=FLAGS.name, classes_per_pass=FLAGS.classes_per_pass, **common)


def _verify(FLAGS, common: dict) -> int:
    """--verify: with an input, what a rerun would find; without, each set's records against its spec."""
    if FLAGS.image_folder is not None or FLAGS.tfds_name is not None:
        reports = [_plan(FLAGS, common)[0].verify()]
    elif FLAGS.name is not None:
        reports = [check.verify_records(os.path.join(FLAGS.output_dir, FLAGS.name))]
    else:
        root = FLAGS.output_dir
        if os.path.exists(os.path.join(root, spec_lib.SPEC_FILE)):
            folders = [root]
        elif os.path.isdir(root):
            folders = [os.path.join(root, e) for e in sorted(os.listdir(root))
                       if os.path.exists(os.path.join(root, e, spec_lib.SPEC_FILE))]
        else:
            raise ConfigError(f"--output_dir={root}: no such folder.")
        if not folders:
            raise ConfigError(f"--output_dir={root} holds no record set (no {spec_lib.SPEC_FILE}); nothing to verify.")
        reports = [check.verify_records(folder) for folder in folders]
    for report in reports:
        for line in report.lines():
            print(f"verify: {line}", file=sys.stdout if report.ok else sys.stderr)
    return 0 if all(report.ok for report in reports) else 1


def run(argv, FLAGS: flags.FlagValues = flags.FLAGS) -> int:
    """The tool's body on parsed flags; returns the exit status."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.image_folder is not None and FLAGS.tfds_name is not None:
        raise app.UsageError("Give exactly one input: --image_folder or --tfds_name, not both.")
    if FLAGS.image_folder is None and FLAGS.tfds_name is None and not FLAGS.verify:
        raise app.UsageError("Give exactly one input: --image_folder or --tfds_name.")
    try:
        common = _options(FLAGS)
        if FLAGS.verify:
            return _verify(FLAGS, common)
        plan, before_load = _plan(FLAGS, common)
        if FLAGS.image_folder is not None:
            report = plan.write(workers=FLAGS.workers, parallel="thread", progress=FLAGS.progress,
                                target_size=FLAGS.target_size)
        else:
            report = plan.write(workers=1, progress=FLAGS.progress, before_load=before_load,
                                target_size=FLAGS.target_size)
    except LiteTfError as error:
        print(f"convert: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # e.g. a read-only or full output folder; the message names the file
        print(f"convert: error: cannot write the output: {error}", file=sys.stderr)
        return 1
    print(report.summary())
    for warning in report.warnings:
        print(f"convert: warning: {warning}", file=sys.stderr)
    for path, why in report.skipped_images[1:]:
        logging.info("skipped %s: %s", path, why)
    return 0


def _parse_flags(argv):
    """absl's parser, with a bad or missing flag reported on one line (exit status 2)."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        print(f"convert: error: {error}", file=sys.stderr)
        sys.exit(2)


def _main(argv) -> int:
    try:
        return run(argv)
    except app.UsageError as error:
        print(f"convert: error: {error}", file=sys.stderr)
        return 2


def main():
    """Console-script entry point (lite_tf_convert)."""
    define_flags()
    app.run(_main, flags_parser=_parse_flags)


if __name__ == "__main__":
    main()
