"""Tiny learners and episodes shared by the learner tests (not a test module)."""
import numpy as np

from lite_tf.registry import get_backbone, get_learner

IMAGE_SIZE = 16
LEARNERS = ["protonets", "simple_cnaps", "cnaps", "finetuner"]


def tiny_learner(name, **overrides):
    """A learner on tiny networks: film_conv4 (8 filters, 2 blocks), a 2-block 8-filter set encoder.

    The set encoder uses moving statistics (per-image codes), so LITE's exactness properties hold;
    the official batch-statistics mode is tested in test_set_encoder_batch_norm.py.
    """
    backbone = get_backbone("film_conv4")(image_size=IMAGE_SIZE, filters=8, blocks=2)
    kwargs = {"backbone": backbone}
    if name in ("simple_cnaps", "cnaps"):
        kwargs.update(set_encoder=get_backbone("set_encoder")(image_size=IMAGE_SIZE, filters=8, blocks=2,
                                                                batch_norm="moving"),
                      generator_hidden=8)
    if name == "finetuner":
        kwargs.update(steps=5, learning_rate=0.1, backbone_trainable=True)
    kwargs.update(overrides)
    return get_learner(name)(**kwargs)


def class_templates(num_classes, seed=0, size=IMAGE_SIZE):
    return np.random.default_rng(seed).uniform(-1, 1, (num_classes, size, size, 3)).astype(np.float32)


def make_episode(shots, queries=2, seed=1, templates=None, noise=0.3, size=IMAGE_SIZE):
    """Episode dict; ``shots`` lists the support count of each class; images = template + noise."""
    rng = np.random.default_rng(seed)
    way = len(shots)
    if templates is None:
        templates = class_templates(way, seed, size)
    classes = rng.choice(len(templates), way, replace=False)

    def images(counts):
        labels = np.repeat(np.arange(way), counts).astype(np.int32)
        pixels = templates[classes[labels]] + noise * rng.normal(size=(len(labels), size, size, 3))
        return np.clip(pixels, -1, 1).astype(np.float32), labels

    support_images, support_labels = images(shots)
    query_images, query_labels = images([queries] * way)
    return {"support_images": support_images, "support_labels": support_labels, "query_images": query_images,
            "query_labels": query_labels, "way": np.int32(way)}


def build(name, **overrides):
    if name == "protonets":
        return get_learner("protonets")(backbone=get_backbone("conv4")(image_size=IMAGE_SIZE, filters=8,
                                                                           blocks=2), **overrides)
    return tiny_learner(name, **overrides)


def relative_errors(expected, got):
    """Per variable: max |difference| / max |expected|."""
    return [float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(a)).max(), 1e-12))
            for a, b in zip(expected, got)]


def relative_error(expected, got, rows=None):
    """||got - expected|| / ||expected|| over the whole gradient (or the variables in ``rows``).

    Whole-vector, not per variable: at initialisation some variables' true gradient is zero
    (e.g. a bias shared by every class's logit), where float32 round-off alone is 'relative error 1'.
    """
    rows = range(len(expected)) if rows is None else rows
    difference = np.sqrt(sum(float(np.sum((np.asarray(got[i]) - np.asarray(expected[i])) ** 2)) for i in rows))
    return difference / np.sqrt(sum(float(np.sum(np.asarray(expected[i]) ** 2)) for i in rows))
