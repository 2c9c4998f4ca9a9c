"""Checks that the synthetic sources are learnable but not trivial: ProtoNets (conv4) 5-way 5-shot
test accuracy before and after a short meta-training run on their TRAIN classes.

    python -m tools.synthetic_learnability --image_size=32 --episodes=500
"""
from __future__ import annotations

import time

from absl import app, flags


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> flags.FlagValues:
    fv = dict(flag_values=flag_values)
    flags.DEFINE_string("output_dir", "/tmp/lite_tf_learnability", "Where the generated data goes.", **fv)
    flags.DEFINE_integer("image_size", 32, "Image size (data is generated at this size).", **fv)
    flags.DEFINE_list("sources", ["glyphs", "shapes", "textures"], "Synthetic sources (mixed in training).", **fv)
    flags.DEFINE_integer("episodes", 500, "Meta-training episodes (one Adam step each).", **fv)
    flags.DEFINE_integer("eval_episodes", 100, "Test episodes per source for each evaluation.", **fv)
    flags.DEFINE_integer("h", 10, "LITE back-propagated support subset size.", **fv)
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.", **fv)
    return flag_values


def run(argv, FLAGS: flags.FlagValues = flags.FLAGS) -> int:
    import keras
    import tensorflow as tf

    from learners.protonets import ProtoNets
    from lite_tf import EpisodicModel, LiteConfig
    from lite_tf.data.synthetic import procedural as synthetic
    from lite_tf.data.metadataset.pipeline import make_episode_dataset

    size = FLAGS.image_size
    folders = [synthetic.write_synthetic_dataset(FLAGS.output_dir, source, image_size=size, progress=False).dataset_dir
               for source in FLAGS.sources]
    kwargs = dict(image_size=size, sampler_kwargs=dict(num_ways=5, num_support=5, num_query=5), image_dtype=tf.uint8)
    keras.utils.set_random_seed(0)
    model = EpisodicModel(ProtoNets("conv4"), size, lite=LiteConfig(mode="lite", h=FLAGS.h), seed=0)
    model.compile(keras.optimizers.Adam(FLAGS.learning_rate))

    def test_accuracy():
        return {source: model.evaluate(make_episode_dataset(folder, "TEST", seed=1, **kwargs).take(FLAGS.eval_episodes),
                                       verbose=0, return_dict=True)["accuracy"]
                for source, folder in zip(FLAGS.sources, folders)}

    before = test_accuracy()
    start = time.time()
    model.fit(make_episode_dataset(folders, "TRAIN", seed=2, **kwargs), steps_per_epoch=FLAGS.episodes, epochs=1,
              verbose=0)
    seconds = time.time() - start
    after = test_accuracy()
    print(f"ProtoNets conv4, {size} px, 5-way 5-shot, {FLAGS.episodes} training episodes ({seconds:.0f} s); "
          f"test accuracy over {FLAGS.eval_episodes} episodes per source (chance 0.20):")
    for source in FLAGS.sources:
        print(f"  {source:<9} before {before[source]:.3f}  after {after[source]:.3f}")
    mean = lambda d: sum(d.values()) / len(d)  # noqa: E731
    print(f"  {'mean':<9} before {mean(before):.3f}  after {mean(after):.3f}")
    return 0


def main():
    define_flags()
    app.run(run)


if __name__ == "__main__":
    main()
