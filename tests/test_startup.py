"""Start-up: 100 variable-shape Meta-Dataset episodes trace the training step once, remat on too."""
import keras
import numpy as np
import pytest

from lite_tf import LiteConfig
from lite_tf.data.metadataset import pipeline
from lite_tf.data.synthetic import fake
from lite_tf.model import EpisodicModel
from lite_tf.learners.protonets import ProtoNets


@pytest.mark.slow  # about 10 s idle (100 steps): over the default suite's budget
@pytest.mark.parametrize("remat", [True])
def test_hundred_pipeline_episodes_trace_once(tmp_path, remat):
    folder = str(tmp_path / "toy")
    spec = fake.flat_toy_spec("toy", folder, classes=(10, 0, 0), images=8)
    fake.write_fake_dataset(spec, folder, image_size=20, seed=0)
    dataset = pipeline.make_episode_dataset(folder, "TRAIN", image_size=16, seed=0,
                                            sampler_kwargs={"max_support_set_size": 30})
    shapes = set()

    def record(episode):
        shapes.add((int(episode["support_labels"].shape[0]), int(episode["query_labels"].shape[0])))
        return episode

    episodes = [record(e) for e in dataset.take(100).as_numpy_iterator()]
    model = EpisodicModel(ProtoNets(backbone="conv4"), image_size=16, seed=0,
                          lite=LiteConfig(h=4, chunk_size=4, remat=remat))
    model.compile(keras.optimizers.Adam(1e-3))
    import tensorflow as tf

    data = tf.data.Dataset.from_generator(lambda: iter(episodes), output_signature=dataset.element_spec)
    history = model.fit(data, steps_per_epoch=100, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert len(shapes) > 20  # the episodes really vary
    assert model.trace_count == 1, (model.trace_count, len(shapes))
