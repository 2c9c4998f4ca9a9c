"""Import PyTorch weights (official LITE model, ImageNet backbones) into a lite_tf model or run folder.

  lite_tf_import_weights --from=official_lite --checkpoint=meta-trained_lite_224.pt --output=runs/official_lite
  lite_tf_evaluate --model_dir=runs/official_lite --data_root=/data/records

``--from=official_lite`` builds the experiment of ``--gin_config`` (default: the paper's Meta-Dataset
Simple CNAPs at 224 px), copies the official state dict into it and writes a run folder
(experiment.gin + best.weights.h5) that lite_tf_evaluate reads as if lite_tf had trained it.
``--from=orbit`` does the same for an ORBIT checkpoint and the ORBIT ``--gin_config`` it was trained as.
``--from=efficientnet_pytorch_b0`` / ``torchvision_efficientnet_b0`` / ``torchvision_resnet18`` write
a backbone weights file (``--output`` ending in .weights.h5) for ``backbones.efficientnet_b0_film.weights``
/ ``backbones.resnet18_film.weights``. The checkpoint is a PyTorch file (pip install -e ".[torch]") or
an .npz of ``param/<state-dict name>`` arrays. Every parameter must be used: nothing is written otherwise.
The work is in lite_tf/weights/runs.py.
"""
from __future__ import annotations

from absl import flags

from lite_tf import cli
from lite_tf.weights.runs import BACKBONES, DEFAULT_EXPERIMENT, RUN_SOURCES

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_enum("from", None, [*RUN_SOURCES, *BACKBONES], "Which PyTorch model the checkpoint holds.")
    flags.DEFINE_string("checkpoint", None, "PyTorch state-dict file (.pt/.pth) or .npz of param/<name> arrays.")
    flags.DEFINE_string("output", None, "official_lite / orbit: a new run folder; backbones: a .weights.h5 file.")
    flags.DEFINE_multi_string("gin_config", [], f"official_lite: experiment file(s) (default {DEFAULT_EXPERIMENT}); "
                              "orbit: required (e.g. gin/experiments/orbit_simple_cnaps.gin).")
    flags.DEFINE_multi_string("gin_bindings", [], "official_lite / orbit: extra gin bindings.")
    flags.DEFINE_integer("image_size", 224, "Backbones: the image size the model is built for (weights do not "
                         "depend on it).")
    flags.DEFINE_enum("input_convention", None, ["minus_one_one", "imagenet"],
                      "EfficientNets: what the stem sees: [-1, 1] images (default for efficientnet_pytorch_b0, as the "
                      "official LITE code fed it) or ImageNet mean/std normalisation (default for torchvision).")


def main(argv) -> int:
    cli.no_arguments(argv)
    from lite_tf.weights.runs import import_checkpoint

    written = import_checkpoint(FLAGS["from"].value, FLAGS.checkpoint, FLAGS.output, FLAGS.gin_config,
                                FLAGS.gin_bindings, FLAGS.image_size, FLAGS.input_convention)
    print(f"wrote {written}")
    return 0


def run():
    """Console-script entry point."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
