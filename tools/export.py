"""Exports a trained learner as a personalised recogniser for the device: SavedModel or .tflite.

  python -m tools.export --model_dir=runs/orbit --format=tflite --output=runs/orbit/recognizer.tflite
  python -m tools.export --model_dir=runs/orbit --format=tflite --quantize=int8 \
      --representative_data=demo_data/orbit/validation/P900 --output=runs/orbit/recognizer_int8.tflite

The model has two signatures (lite_tf/export/recognizer.py): personalize(context_images uint8
[N, S, S, 3], context_labels int32 [N]) -> state, and classify(images uint8 [B, S, S, 3], **state)
-> logits [B, max_way]. The run is rebuilt from <model_dir>/experiment.gin (plus --gin_bindings) with
--checkpoint loaded. A JSON file beside the model (<output>.json; lite_tf_export.json inside a
SavedModel folder) holds its image size, caps and state names, and for a quantised file the
accuracy of the float and quantised models on one task from --evaluation_data (default: the
representative folder). Image folders hold one subfolder per class, images anywhere below it.
"""
from __future__ import annotations

from absl import flags

from lite_tf import cli

FLAGS = flags.FLAGS


def define_flags():
    from lite_tf.export import DEFAULT_MAX_CONTEXT, DEFAULT_MAX_WAY, FORMATS, QUANTIZATIONS

    flags.DEFINE_string("model_dir", None, "A training run's folder (holds experiment.gin).")
    flags.DEFINE_multi_string("gin_config", [], "Gin config file(s), only when there is no --model_dir.")
    flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings applied after the run's experiment.gin.")
    flags.DEFINE_string("checkpoint", "best", "'best', 'latest', 'init' (untrained, same seed) or a weights file.")
    flags.DEFINE_enum("format", "saved_model", list(FORMATS), "SavedModel folder or LiteRT flatbuffer.")
    flags.DEFINE_enum("quantize", "none", list(QUANTIZATIONS), "tflite only: none (float32), dynamic (int8 "
                      "weights) or int8 (weights and activations, calibrated on --representative_data).")
    flags.DEFINE_string("representative_data", None, "Image folder (one subfolder per class) calibrating int8.")
    flags.DEFINE_string("evaluation_data", None, "Image folder measuring a quantised file's accuracy drop "
                        "(default: --representative_data).")
    flags.DEFINE_integer("max_way", DEFAULT_MAX_WAY, "Class slots in the state; labels must be below it.")
    flags.DEFINE_integer("max_context", DEFAULT_MAX_CONTEXT, "Most context images one personalisation takes.")
    flags.DEFINE_string("output", None, "Where to write (default: <model_dir>/recognizer[.tflite]).")


def main(argv) -> int:
    cli.no_arguments(argv)
    import os

    from lite_tf.errors import ConfigError
    from lite_tf.export import export_run

    output = FLAGS.output
    if output is None:
        if not FLAGS.model_dir:
            raise ConfigError("--output is required without --model_dir.")
        output = os.path.join(FLAGS.model_dir, "recognizer" + (".tflite" if FLAGS.format == "tflite" else ""))
    meta = export_run(FLAGS.model_dir, output, FLAGS.format, FLAGS.quantize, FLAGS.representative_data,
                      FLAGS.evaluation_data, FLAGS.checkpoint, FLAGS.gin_bindings, FLAGS.gin_config,
                      FLAGS.max_way, FLAGS.max_context)
    print(f"Wrote {output} ({meta['learner']}, {meta['format']}, quantize={meta['quantize']}, "
          f"{meta['image_size']} px, up to {meta['max_way']} classes and {meta['max_context']} context images).")
    if "accuracy" in meta:
        accuracy = meta["accuracy"]
        print(f"Accuracy on {accuracy['query_images']} query images: float32 {accuracy['float32']:.4f}, "
              f"{meta['quantize']} {accuracy['quantized']:.4f} (drop {accuracy['drop']:+.4f}).")
    return 0


def run():
    """Console-script entry point."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
