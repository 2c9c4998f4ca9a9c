"""Converts image folders or TFDS image-classification datasets to Meta-Dataset records.

    # one sub-folder per class; 70/15/15 class split drawn with --seed
    lite_tf_convert --image_folder=/data/birds --output_dir=/data/records
    # class split from a file (JSON {"train": [...], "valid": [...], "test": [...]} or text with
    # "train:" / "valid:" / "test:" header lines followed by one class name per line)
    lite_tf_convert --image_folder=/data/birds --split_file=splits.txt --output_dir=/data/records
    # an already prepared TFDS dataset (offline); --download allows downloading it first
    lite_tf_convert --tfds_name=oxford_flowers102 --tfds_data_dir=~/tensorflow_datasets \
        --output_dir=/data/records

Writes ``<output_dir>/<name>/{<class_id>.tfrecords, dataset_spec.json}``. Class files are written
atomically and the spec last: an interrupted run leaves no spec, and running the same command again
resumes, keeping the class files already written. A folder holding a different dataset is refused.
Unreadable or non-image files stop the run with an error naming the file, unless
--skip_bad_images (they are then skipped, logged, and counted in the summary).
"""
from __future__ import annotations

import sys

from absl import app, flags, logging

from lite_tf.data.writing import convert, writer


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
                      "Fractions of classes in TRAIN,VALID,TEST (ignored with --split_file).", **fv)
    flags.DEFINE_string("split_file", None, "JSON or text file naming the classes of each split.", **fv)
    flags.DEFINE_integer("seed", 0, "Seed of the class split drawn from --split_fractions.", **fv)
    flags.DEFINE_bool("skip_bad_images", False, "Skip unreadable/non-image files (logged and counted) instead of "
                      "stopping with an error.", **fv)
    flags.DEFINE_integer("max_side", None, "Shrink images whose longer side exceeds this many pixels.", **fv)
    flags.DEFINE_integer("jpeg_quality", convert.DEFAULT_JPEG_QUALITY, "Quality of images re-encoded as JPEG.",
                         **fv)
    flags.DEFINE_integer("workers", 2, "Threads reading and checking images (image folders).", **fv)
    flags.DEFINE_bool("progress", True, "Show a progress bar.", **fv)
    flags.mark_flag_as_required("output_dir", flag_values=flag_values)
    return flag_values


def run(argv, FLAGS: flags.FlagValues = flags.FLAGS) -> int:
    """The tool's body on parsed flags; returns the exit status."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if (FLAGS.image_folder is None) == (FLAGS.tfds_name is None):
        raise app.UsageError("Give exactly one input: --image_folder or --tfds_name.")
    try:
        fractions = [float(f) for f in FLAGS.split_fractions]
    except ValueError:
        raise app.UsageError(f"--split_fractions must be numbers TRAIN,VALID,TEST; got "
                             f"{','.join(FLAGS.split_fractions)}.") from None
    common = dict(split_fractions=fractions, split_file=FLAGS.split_file,
                  seed=FLAGS.seed, skip_bad_images=FLAGS.skip_bad_images, max_side=FLAGS.max_side,
                  jpeg_quality=FLAGS.jpeg_quality)
    try:
        if FLAGS.image_folder is not None:
            report = convert.convert_image_folder(FLAGS.image_folder, FLAGS.output_dir, FLAGS.name,
                                                  workers=FLAGS.workers, progress=FLAGS.progress, **common)
        else:
            report = convert.convert_tfds(FLAGS.tfds_name, FLAGS.output_dir, FLAGS.tfds_data_dir, FLAGS.download,
                                          progress=FLAGS.progress, tfds_splits=FLAGS.tfds_splits,
                                          image_key=FLAGS.image_key, label_key=FLAGS.label_key,
                                          dataset_name=FLAGS.name, classes_per_pass=FLAGS.classes_per_pass,
                                          **common)
    except (convert.ConvertError, writer.DatasetWriteError) as error:
        print(f"convert: error: {error}", file=sys.stderr)
        return 1
    print(report.summary())
    for path, why in report.skipped_images[1:]:
        logging.info("skipped %s: %s", path, why)
    return 0


def main():
    """Console-script entry point (lite_tf_convert)."""
    define_flags()
    app.run(run)


if __name__ == "__main__":
    main()
