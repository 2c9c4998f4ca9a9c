"""Official parity: the official LITE Simple CNAPs weights, imported, give the official outputs.

The fixture (shared/parity/official_lite_simple_cnaps_224.npz, see its README) holds the official
PyTorch model's state dict and its outputs on one 5-way 2-shot task at 224 px. Every tensor must
agree to a relative error below 1e-4.
"""
import os

import numpy as np
import pytest
import tensorflow as tf

from lite_tf.backbones.film import call_backbone
from lite_tf.backbones.set_encoder import task_embedding
from lite_tf.images import to_float_images
from lite_tf.registry import get_learner
from lite_tf.weights import import_weights, load_state_dict

FIXTURE = "official_lite_simple_cnaps_224.npz"
TOLERANCE = 1e-4


def parity_fixture() -> str:
    """$LITE_TF_PARITY (a folder), or shared/parity inside or beside the checkout (where CI puts it)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (os.environ.get("LITE_TF_PARITY", ""), os.path.join(here, "..", "shared", "parity"),
                   os.path.join(here, "..", "..", "shared", "parity")):
        if folder and os.path.isfile(os.path.join(folder, FIXTURE)):
            return os.path.join(folder, FIXTURE)
    pytest.skip(f"parity fixture {FIXTURE} not found (set LITE_TF_PARITY to the folder holding it)")


def relative_error(got, expected) -> float:
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(got - expected) / max(np.linalg.norm(expected), 1e-12))


@pytest.fixture(scope="module")
def official():
    with np.load(parity_fixture()) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture
def learner(official):
    import keras
    import lite_tf.registry

    lite_tf.registry.load_plugins()
    learner = get_learner("simple_cnaps")()  # the default configuration is the official architecture
    learner.build_for(224)
    copied = import_weights(learner, "official_lite", parity_fixture())
    state = load_state_dict(parity_fixture())
    assert len(state) == 593
    # all but the empty ImageNet classifier (_fc.weight, _fc.bias), plus the input Normalization's mean and variance
    assert copied == len(state) - 2 + 2
    return learner


def test_official_lite_outputs_are_reproduced(official, learner):
    context = to_float_images(official["input/context_images_uint8"])
    target = to_float_images(official["input/target_images_uint8"])
    labels = tf.constant(official["input/context_labels"], tf.int32)
    errors = {}
    z = task_embedding(learner.set_encoder, context)
    errors["task_representation"] = relative_error(z[None], official["output/task_representation"])
    film = learner.film_generator(z)
    assert len(film) == 18
    for layer, (gamma, beta) in enumerate(film):
        errors[f"film/layer{layer}/gamma"] = relative_error(gamma[0], official[f"output/film/layer{layer}/block0/gamma"])
        errors[f"film/layer{layer}/beta"] = relative_error(beta[0], official[f"output/film/layer{layer}/block0/beta"])
    context_features = call_backbone(learner.backbone, context, film)
    target_features = call_backbone(learner.backbone, target, film)
    errors["context_features"] = relative_error(context_features, official["output/context_features"])
    errors["target_features"] = relative_error(target_features, official["output/target_features"])
    logits = learner.head_logits(context_features, labels, 5, target_features)
    errors["logits"] = relative_error(logits, official["output/logits"])
    errors["film_regularization_term"] = relative_error(learner.film_generator.l2(),
                                                        official["output/film_regularization_term"])
    bad = {name: error for name, error in errors.items() if not error < TOLERANCE}
    assert not bad, f"relative errors above {TOLERANCE}: {bad}"
    # the same numbers through the learner's own forward pass (and its 0.001-weighted regulariser)
    np.testing.assert_allclose(float(learner.regularization_loss()),
                               0.001 * float(official["output/film_regularization_term"]), rtol=1e-5)
