"""Tiny learners and episodes shared by the learner tests (not a test module)."""
import numpy as np

from lite_tf.registry import get_backbone, get_learner

IMAGE_SIZE = 16


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
