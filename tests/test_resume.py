"""A killed run, rerun with the same command, ends bit for bit where an uninterrupted run ends:
checkpoint tensors (weights, optimizer moments, iterations and gradient-accumulation sums, epoch,
subset-seed state), best.weights.h5, best.json and every TensorBoard value but wall-clock ones.

Kills land at named points (tests/kill_child.py): start-up, mid-epoch, mid-update (3 tasks per
update over 2-episode epochs, so epochs end mid-accumulation), and at each epoch-end write. The
default suite kills once, inside a checkpoint write; the other points are @slow.
"""
import pytest

from launch_helpers import TINY_CONFIG, data_root  # noqa: F401  (fixture)
from resume_helpers import assert_same_run, run_killed, train_flags

BINDINGS = ["Training.epochs = 4", "Training.episodes_per_epoch = 2", "Training.tasks_per_update = 3"]


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "tiny.gin"
    path.write_text(TINY_CONFIG)
    return str(path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_config, data_root):  # noqa: F811
    """The uninterrupted run."""
    from lite_tf.experiment import train

    model_dir = str(tmp_path_factory.mktemp("reference") / "run")
    train(model_dir, [tiny_config], BINDINGS, data_root, verbose=0)
    return model_dir


def killed_then_finished(tmp_path, tiny_config, data_root, kills):  # noqa: F811
    """Kills the trainer at each (point, n) in turn, reruns the same command each time, then lets
    the last rerun finish (in this process, as a user's rerun would run the same code)."""
    from lite_tf.experiment import train

    model_dir = str(tmp_path / "run")
    flags = train_flags(tiny_config, data_root, model_dir, BINDINGS)
    for point, occurrence in kills:
        assert run_killed(point, occurrence, flags), f"the trainer finished before {point} #{occurrence}"
    train(model_dir, [tiny_config], BINDINGS, data_root, verbose=0)
    return model_dir


def test_a_kill_inside_a_checkpoint_write_changes_nothing(tmp_path, tiny_config, data_root, reference):  # noqa: F811
    # Epoch 2's checkpoint files are written, the index still names epoch 1 (whose update is 2 of
    # 3 tasks in): the rerun continues the episode stream at episode 3 with the accumulated
    # gradients restored, redoes epoch 2, replaces its events file and replays best weights.
    model_dir = killed_then_finished(tmp_path, tiny_config, data_root, [("checkpoint", 2)])
    assert_same_run(model_dir, reference)


@pytest.mark.slow
@pytest.mark.parametrize("kills", [
    [("best_json", 1), ("checkpoint", 2)],  # best weights in place, best.json not yet; then a checkpoint
    [("record", 1), ("step", 3), ("step", 4)],  # start-up; mid-epoch 2 (mid-update); its last step
    # Before the first best weights are renamed into place; after epoch 1's events (nothing saved
    # yet, so epoch 1 again), then after epoch 2's events, each before its checkpoint.
    [("best_weights", 1), ("events", 1), ("events", 2)],
    [("checkpoint", 1), ("best_json", 1), ("step", 7), ("checkpoint", 1)],
], ids=["best-json", "startup-and-steps", "events-and-weights", "checkpoints"])
def test_kills_at_every_point_change_nothing(tmp_path, tiny_config, data_root, reference, kills):  # noqa: F811
    assert_same_run(killed_then_finished(tmp_path, tiny_config, data_root, kills), reference)


@pytest.mark.slow  # CI budget: a fit, a checkpoint and a second fit at 32 px
def test_dropout_masks_continue_after_a_restore(tmp_path):
    """Keras seed generators inside layers (Dropout with training=True) are saved with the
    checkpoint (``tf.train.Checkpoint(model=...)`` alone leaves them out), so the epoch after a
    restore draws the masks, and ends with the weights, of the uninterrupted run."""
    import keras
    import numpy as np

    from helpers import IMAGE_SIZE, episode_dataset
    from lite_tf import EpisodicModel, LiteConfig
    from lite_tf.backbones.conv import conv4
    from lite_tf.callbacks import ResumableCheckpoint
    from lite_tf.learners.protonets import ProtoNets

    def model():
        keras.utils.set_random_seed(5)
        backbone = keras.Sequential([conv4(IMAGE_SIZE, filters=8, blocks=2), keras.layers.Dropout(0.5)])
        built = EpisodicModel(ProtoNets(backbone, bn_training=True), IMAGE_SIZE, lite=LiteConfig(h=3, chunk_size=4),
                              seed=3)
        built.compile(keras.optimizers.SGD(0.1))
        return built

    episodes = episode_dataset(seed=1, count=4)
    uninterrupted = model()
    saver = ResumableCheckpoint(str(tmp_path), uninterrupted)
    uninterrupted.fit(episodes.take(2), epochs=1, steps_per_epoch=2, callbacks=[saver], verbose=0)
    uninterrupted.fit(episodes.skip(2), initial_epoch=1, epochs=2, steps_per_epoch=2, verbose=0)

    resumed = model()
    assert ResumableCheckpoint(str(tmp_path), resumed).restore() == 1
    resumed.fit(episodes.skip(2), initial_epoch=1, epochs=2, steps_per_epoch=2, verbose=0)
    for got, expected in zip(resumed.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.slow  # CI budget: two pipelines over a few hundred episodes
def test_the_episode_stream_starts_anywhere_without_reading_what_comes_before(data_root):  # noqa: F811
    """Episode n depends on the seed and n alone: first_episode=k gives episodes k, k+1, ... of the
    stream, also past the planned block (episodes_ahead=2: episodes 3 and 4 reuse planned class
    structures with rotated records), and through Source.episodes_from."""
    import numpy as np

    from lite_tf.data.metadataset.pipeline import make_episode_dataset
    from lite_tf.sources.metadataset import MetaDataset

    def stream(first, count):
        dataset = make_episode_dataset(data_root, "train", image_size=32, datasets=["glyphs"], seed=4,
                                       episodes_ahead=2, sampler_kwargs=dict(num_ways=3, num_support=2, num_query=1),
                                       first_episode=first)
        return [{key: np.asarray(value) for key, value in episode.items()} for episode in dataset.take(count)]

    whole, tail = stream(0, 5), stream(3, 2)
    for got, expected in zip(tail, whole[3:]):
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key])
    assert not np.array_equal(whole[1]["support_images"], whole[3]["support_images"])  # new records
    import gin

    with gin.unlock_config():
        gin.parse_config(["EpisodeSampler.num_ways = 3", "EpisodeSampler.num_support = 2",
                          "EpisodeSampler.num_query = 1"])
    source = MetaDataset(datasets=["glyphs"])
    episode = next(iter(source.episodes_from(3, "train", image_size=32, seed=0, data_root=data_root)))
    expected = next(iter(source.episodes("train", image_size=32, seed=0, data_root=data_root).skip(3)))
    np.testing.assert_array_equal(episode["support_images"], expected["support_images"])
