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
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

DEFAULT_EXPERIMENT = "gin/experiments/md_simple_cnaps.gin"
# The experiment's backbone starts random (no keras ImageNet download); the checkpoint overwrites it.
NO_PRETRAINED = ("backbones.efficientnet_b0_film.weights = None", "backbones.efficientnet_b0.weights = None")
# ORBIT feeds ImageNet-normalised frames to its set encoder (and ResNets: bind their input_normalization).
ORBIT_BINDINGS = ("backbones.set_encoder.input_normalization = 'imagenet'",)
BACKBONES = {"efficientnet_pytorch_b0": "efficientnet_b0_film", "torchvision_efficientnet_b0": "efficientnet_b0_film",
             "torchvision_resnet18": "resnet18_film"}
WEIGHTS_SUFFIX = ".weights.h5"


def define_flags():
    """Defines this tool's flags (only when it runs, so tools can be imported together)."""
    flags.DEFINE_enum("from", None, ["official_lite", "orbit", *BACKBONES], "Which PyTorch model the checkpoint holds.")
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


FLAGS = flags.FLAGS


def save_weights(model, path: str) -> None:
    """Keras weights written to a temporary name, then renamed: no half-written file looks complete."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = path[: -len(WEIGHTS_SUFFIX)] + ".tmp" + WEIGHTS_SUFFIX
    try:
        model.save_weights(temporary, overwrite=True)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def import_run(source: str, checkpoint: str, output: str, configs=(), bindings=()) -> str:
    """Writes ``output``/experiment.gin and best.weights.h5 holding an official model; returns the weights path."""
    from lite_tf.errors import ConfigError
    from lite_tf.weights import import_weights, load_state_dict
    from tools import experiment

    if source == "orbit" and not configs:
        raise ConfigError("--from=orbit needs --gin_config: the ORBIT experiment the checkpoint was trained as "
                          "(e.g. gin/experiments/orbit_simple_cnaps.gin).")
    state = load_state_dict(checkpoint)  # a bad file fails before the model is built
    extra = ORBIT_BINDINGS if source == "orbit" else ()
    config_text = experiment.parse_gin(list(configs) or [DEFAULT_EXPERIMENT], [*NO_PRETRAINED, *extra, *bindings])
    experiment.check_model_dir(output, config_text)
    model, _ = experiment.build()
    import_weights(model.learner, source, state, where=checkpoint)
    weights = os.path.join(output, "best.weights.h5")
    save_weights(model, weights)
    experiment.record_experiment(output, config_text)
    return weights


def import_backbone(source: str, checkpoint: str, output: str, image_size: int = 224, **options) -> str:
    """Writes the ``source`` backbone's weights as a Keras weights file ``output``; returns it."""
    from lite_tf.errors import ConfigError
    from lite_tf.registry import get_backbone, load_plugins
    from lite_tf.weights import import_weights

    if not output.endswith(WEIGHTS_SUFFIX):
        raise ConfigError(f"--output for a backbone must end in {WEIGHTS_SUFFIX}; got {output!r}.")
    load_plugins()
    name = BACKBONES[source]
    if source == "torchvision_efficientnet_b0":  # loads as efficientnet_b0_film(..., padding='symmetric', ...)
        model = get_backbone(name)(image_size=image_size, padding="symmetric", batch_norm_epsilon=1e-5)
    elif name == "efficientnet_b0_film":
        import keras  # the application's layout, which both efficientnet_b0 and efficientnet_b0_film load

        model = keras.applications.EfficientNetB0(include_top=False, weights=None, pooling="avg",
                                                  input_shape=(image_size, image_size, 3))
    else:
        model = get_backbone(name)(image_size=image_size)
    import_weights(model, source, checkpoint, **options)
    save_weights(model, output)
    return output


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    source = FLAGS["from"].value
    for flag in ("from", "checkpoint", "output"):
        if not FLAGS[flag].value:
            raise app.UsageError(f"--{flag} is required.")
    from lite_tf.errors import LiteTfError
    from tools.experiment import ExperimentError

    try:
        if source in ("official_lite", "orbit"):
            written = import_run(source, FLAGS.checkpoint, FLAGS.output, FLAGS.gin_config, FLAGS.gin_bindings)
        else:
            options = {}
            if FLAGS.input_convention and "efficientnet" in source:
                options["input_convention"] = FLAGS.input_convention
            written = import_backbone(source, FLAGS.checkpoint, FLAGS.output, FLAGS.image_size, **options)
    except (LiteTfError, ExperimentError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {written}")
    return 0


def run():
    """Console-script entry point."""
    define_flags()
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
