"""Imported PyTorch checkpoints written as lite_tf files: a run folder (experiment.gin +
best.weights.h5, which lite_tf_evaluate reads as if lite_tf had trained it) or a backbone weights
file (for ``backbones.*.weights``). What ``lite_tf_import_weights`` calls.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

from lite_tf.errors import ConfigError

DEFAULT_EXPERIMENT = "gin/experiments/md_simple_cnaps.gin"
# The experiment's backbone starts random (no keras ImageNet download); the checkpoint overwrites it.
NO_PRETRAINED = ("backbones.efficientnet_b0_film.weights = None", "backbones.efficientnet_b0.weights = None")
# How the official LITE code evaluates (cambridge-mlg/LITE src/): its set encoder is never put in eval
# mode (batch statistics of the context set, in chunks of its --batch_size, 40 at 224 px); Meta-Dataset
# images come through Google's decoder ('reference', bit-exact); VTAB images through PIL's Lanczos, which
# lite_tf_evaluate_vtab_md --protocol=lite applies (the official code's own protocol).
OFFICIAL_LITE_BINDINGS = ("backbones.set_encoder.batch_norm = 'context'",
                          "backbones.set_encoder.context_chunk = 40",
                          "make_episode_dataset.resize_method = 'reference'")
# The official ORBIT code (tag results-neurips21-paper): ImageNet-normalised frames into its set
# encoder and ResNets (features/resnet.py; the EfficientNet's normalisation is set by the importer),
# the set encoder kept in train mode (_set_model_state: batch statistics, on batches of 256 clips of 8
# frames), the 224 px ResNet-18 stem padded by 1 (conv1 padding=1), ProtoNets logits 2 p.x - |p|^2
# (models/classifiers.py PrototypicalClassifier).
ORBIT_BINDINGS = ("backbones.set_encoder.input_normalization = 'imagenet'",
                  "backbones.set_encoder.batch_norm = 'context'",
                  "backbones.set_encoder.context_chunk = 2048",
                  "backbones.resnet18_film.input_normalization = 'imagenet'",
                  "backbones.resnet18_film.stem_padding = 1",
                  "backbones.resnet18_film_84.input_normalization = 'imagenet'",
                  "learners.protonets.logits = 'linear'")
RUN_SOURCES = ("official_lite", "orbit")
BACKBONES = {"efficientnet_pytorch_b0": "efficientnet_b0_film", "torchvision_efficientnet_b0": "efficientnet_b0_film",
             "torchvision_resnet18": "resnet18_film"}
WEIGHTS_SUFFIX = ".weights.h5"


def save_weights(model, path: str) -> None:
    """Keras weights written to a temporary name, then renamed: no half-written file looks complete.

    (Keras insists on the .weights.h5 suffix, so lite_tf.atomic's temporary names do not fit.)
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = path[: -len(WEIGHTS_SUFFIX)] + ".tmp" + WEIGHTS_SUFFIX
    try:
        model.save_weights(temporary, overwrite=True)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def import_run(source: str, checkpoint: str, output: str, configs: Sequence[str] = (),
               bindings: Sequence[str] = ()) -> str:
    """Writes ``output``/experiment.gin and best.weights.h5 holding an official model; returns the weights path.

    experiment.gin holds the official code's evaluation bindings (``OFFICIAL_LITE_BINDINGS`` /
    ``ORBIT_BINDINGS``); ``bindings`` come after them, so a user's binding wins.
    """
    from lite_tf import experiment
    from lite_tf.model_dir import BEST_WEIGHTS, ModelDir
    from lite_tf.weights import import_weights, load_state_dict

    if source == "orbit" and not configs:
        raise ConfigError("--from=orbit needs --gin_config: the ORBIT experiment the checkpoint was trained as "
                          "(e.g. gin/experiments/orbit_simple_cnaps.gin).")
    run_dir = ModelDir(output)
    state = load_state_dict(checkpoint)  # a bad file fails before the model is built
    extra = ORBIT_BINDINGS if source == "orbit" else OFFICIAL_LITE_BINDINGS
    config_text = experiment.parse_gin(list(configs) or [DEFAULT_EXPERIMENT], [*NO_PRETRAINED, *extra, *bindings])
    run_dir.check(config_text)
    model, _ = experiment.build()
    import_weights(model.learner, source, state, where=checkpoint)
    weights = run_dir.join(BEST_WEIGHTS)
    save_weights(model, weights)
    run_dir.record(config_text)  # last: a folder with experiment.gin is a complete run
    return weights


def import_backbone(source: str, checkpoint: str, output: str, image_size: int = 224, **options) -> str:
    """Writes the ``source`` backbone's weights as a Keras weights file ``output``; returns it."""
    from lite_tf.registry import get_backbone, load_plugins
    from lite_tf.weights import import_weights, load_state_dict

    if source not in BACKBONES:
        raise ConfigError(f"Unknown backbone weights source {source!r}; known: {', '.join(BACKBONES)}.")
    if not output.endswith(WEIGHTS_SUFFIX):
        raise ConfigError(f"--output for a backbone must end in {WEIGHTS_SUFFIX}; got {output!r}.")
    state = load_state_dict(checkpoint)  # a bad file (truncated, NaN) fails before the model is built
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
    import_weights(model, source, state, where=checkpoint, **options)
    save_weights(model, output)
    return output


def import_checkpoint(source: str, checkpoint: str, output: str, configs: Sequence[str] = (),
                      bindings: Sequence[str] = (), image_size: int = 224,
                      input_convention: Optional[str] = None) -> str:
    """``import_run`` for a whole model (official_lite, orbit), else ``import_backbone``; returns what it wrote.

    ``input_convention`` (EfficientNets only) overrides the source's default stem input.
    """
    for name, value in (("from", source), ("checkpoint", checkpoint), ("output", output)):
        if not value:
            raise ConfigError(f"--{name} is required.")
    try:
        if source in RUN_SOURCES:
            return import_run(source, checkpoint, output, configs, bindings)
        options = {"input_convention": input_convention} if input_convention and "efficientnet" in source else {}
        return import_backbone(source, checkpoint, output, image_size, **options)
    except OSError as error:  # e.g. a read-only output folder; the message names the file
        raise ConfigError(f"Cannot write {output!r}: {error}") from error
