"""Prepares the two inputs the official LITE code's VTAB+MD runs use beyond Meta-Dataset and TFDS.

  # the MNIST training source of MD-v2 (cambridge-mlg/LITE extras/prepare_extra_dataset.py)
  lite_tf_prepare_lite_data --dataset=mnist --tfds_data_dir=/data/tensorflow_datasets --output_dir=/data/records
  #   or from the original t10k-*-ubyte.gz files, as LITE reads them (their order too):
  lite_tf_prepare_lite_data --dataset=mnist --mnist_idx_dir=/data/mnist_raw --output_dir=/data/records
  # the SUN397 image folder that --protocol=lite evaluates (LITE src/image_folder_reader.py)
  lite_tf_prepare_lite_data --dataset=sun397 --tfds_data_dir=/data/tensorflow_datasets --output_dir=/data/sun397

The work is in lite_tf/data/writing/mnist_lite.py and lite_tf/data/vtab/image_folder.py.
"""
from __future__ import annotations

from absl import flags

from lite_tf import cli

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_enum("dataset", None, ["mnist", "sun397"], "mnist: Meta-Dataset records of LITE's MNIST source "
                      "into <output_dir>/mnist; sun397: an image folder of TFDS sun397 in <output_dir>.")
    flags.DEFINE_string("output_dir", None, "Records root (mnist) or the new image folder (sun397).")
    flags.DEFINE_string("tfds_data_dir", None, "TFDS data dir with mnist or sun397 prepared (tfds build ...).")
    flags.DEFINE_string("mnist_idx_dir", None, "mnist: read t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
                        "from this folder instead of TFDS.")
    flags.DEFINE_string("sun397_config", "tfds", "sun397: the TFDS config to export (all its splits).")
    flags.DEFINE_bool("progress", True, "Show a progress bar (mnist).")
    flags.mark_flags_as_required(["dataset", "output_dir"])


def main(argv) -> int:
    cli.no_arguments(argv)
    if FLAGS.dataset == "sun397":
        from lite_tf.data.vtab.image_folder import export_tfds_sun397

        export_tfds_sun397(FLAGS.tfds_data_dir, FLAGS.output_dir, FLAGS.sun397_config)
        return 0
    from lite_tf.data.writing import mnist_lite

    if FLAGS.mnist_idx_dir:
        images, labels = mnist_lite.read_idx(FLAGS.mnist_idx_dir)
        provenance = {"source": "idx t10k"}
    else:
        images, labels = mnist_lite.read_tfds(FLAGS.tfds_data_dir)
        provenance = {"source": "tfds mnist test"}
    report = mnist_lite.write_lite_mnist(FLAGS.output_dir, images, labels, provenance, progress=FLAGS.progress)
    print(report.summary())
    return 0


def run():
    """Console-script entry point."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
