"""The pipeline's episodes train an EpisodicModel directly (one trace for varying episode sizes)."""
import keras
import numpy as np

from lite_tf.data.metadataset import pipeline
from lite_tf.data.synthetic import fake
from lite_tf.model import EpisodicModel
from lite_tf.learners.protonets import ProtoNets


def test_fit_on_pipeline_episodes(tmp_path):
    folder = str(tmp_path / "toy")
    spec = fake.flat_toy_spec("toy", folder, classes=(8, 0, 0), images=6)
    fake.write_fake_dataset(spec, folder, image_size=20, seed=0)
    dataset = pipeline.make_episode_dataset(folder, "TRAIN", image_size=16, seed=0,
                                            sampler_kwargs={"max_support_set_size": 20})
    model = EpisodicModel(ProtoNets(backbone="conv4"), image_size=16, seed=0)
    model.compile(keras.optimizers.Adam(1e-3))
    history = model.fit(dataset, steps_per_epoch=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # Episode sizes vary every step; a retrace per size would give >= 3 here. (Keras traces the step
    # twice on its first call with any episode dataset, hence 2.)
    assert model.trace_count == 1
