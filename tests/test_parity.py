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
from tests.helpers import parity_fixture_path, relative_error

FIXTURE = "official_lite_simple_cnaps_224.npz"
TOLERANCE = 1e-4


def parity_fixture() -> str:
    return parity_fixture_path(FIXTURE)


@pytest.fixture(scope="module")
def official():
    with np.load(parity_fixture()) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture
def learner(official):
    import lite_tf.registry

    lite_tf.registry.load_plugins()
    from lite_tf.backbones.set_encoder import set_encoder

    # the default configuration is the official architecture; this fixture is the all-eval() forward,
    # so the set encoder runs on its moving statistics (the as-run fixture: test_parity_as_run.py)
    learner = get_learner("simple_cnaps")(set_encoder=set_encoder(224, batch_norm="moving"))
    learner.build_for(224)
    copied = import_weights(learner, "official_lite", parity_fixture())
    state = load_state_dict(parity_fixture())
    assert len(state) == 593
    # all but the empty ImageNet classifier (_fc.weight, _fc.bias), plus the input Normalization's mean and variance
    assert copied == len(state) - 2 + 2
    return learner


def official_errors(official, learner) -> dict:
    """Relative error of every official output recomputed by ``learner``."""
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
    return errors


def assert_parity(errors: dict) -> None:
    bad = {name: error for name, error in errors.items() if not error < TOLERANCE}
    assert not bad, f"relative errors above {TOLERANCE}: {bad}"


def test_official_lite_outputs_are_reproduced(official, learner):
    assert_parity(official_errors(official, learner))
    # the same numbers through the learner's own forward pass (and its 0.001-weighted regulariser)
    np.testing.assert_allclose(float(learner.regularization_loss()),
                               0.001 * float(official["output/film_regularization_term"]), rtol=1e-5)


@pytest.mark.slow
def test_imported_run_folder_evaluates_with_the_official_numbers(official, tmp_path):
    """The README's flow: lite_tf_import_weights writes a run folder; evaluation rebuilds it from
    experiment.gin and best.weights.h5 (as lite_tf.experiment.evaluate does) and, with the set encoder
    bound to its moving statistics, gets the official all-eval() outputs."""
    from lite_tf import experiment
    from lite_tf.weights.runs import import_run

    run = str(tmp_path / "official_lite")
    import_run("official_lite", parity_fixture(), run)
    assert sorted(os.listdir(run)) == ["best.weights.h5", "experiment.gin"]
    # the eval-mode outputs stay one binding away (the run itself binds the official batch statistics)
    model, _ = experiment.load_run(run, ["backbones.set_encoder.batch_norm = 'moving'"])
    experiment.load_weights(model, run, "best")
    assert_parity(official_errors(official, model.learner))


@pytest.mark.slow
def test_plain_efficientnet_pytorch_file_gives_the_official_features(official, tmp_path):
    """The official feature extractor as a plain EfficientNet-PyTorch file (its own naming, no prefix),
    imported as a backbone weights file, gives the official features under the official FiLM."""
    from lite_tf.weights.runs import import_backbone
    from lite_tf.backbones.film_efficientnet import efficientnet_b0_film

    prefix = "param/feature_extractor."
    checkpoint = str(tmp_path / "efficientnet-b0.npz")
    np.savez(checkpoint, **{"param/" + k[len(prefix):]: v for k, v in official.items() if k.startswith(prefix)})
    weights = import_backbone("efficientnet_pytorch_b0", checkpoint, str(tmp_path / "b0.weights.h5"))
    backbone = efficientnet_b0_film(224, weights=weights)
    film = [(official[f"output/film/layer{i}/block0/gamma"], official[f"output/film/layer{i}/block0/beta"])
            for i in range(18)]
    features = call_backbone(backbone, to_float_images(official["input/target_images_uint8"]), film)
    assert relative_error(features, official["output/target_features"]) < TOLERANCE


def test_orbit_efficientnet_simple_cnaps_is_the_official_model_on_imagenet_normalised_frames(official):
    """ORBIT's Simple CNAPs (same networks, prefixes set_encoder.encoding_fn / feature_adapter, ImageNet-
    normalised frames): the fixture's weights renamed ORBIT's way, imported with --from=orbit, give on
    images x what the official LITE import gives on the normalised pixels (64 px keeps it quick)."""
    from lite_tf.backbones.input_normalization import IMAGENET_MEAN_RGB, IMAGENET_STDDEV_RGB
    from lite_tf.backbones.set_encoder import set_encoder

    renames = (("set_encoder.pre_pooling_fn.", "set_encoder.encoding_fn."),
               ("feature_adaptation_network.", "feature_adapter."))
    state = {}
    for name, value in load_state_dict(parity_fixture()).items():
        for old, new in renames:
            name = name.replace(old, new) if name.startswith(old) else name
        state[name] = value
    size = 64
    orbit = get_learner("simple_cnaps")(set_encoder=set_encoder(size, input_normalization="imagenet"))
    orbit.build_for(size)
    import_weights(orbit, "orbit", state)
    lite = get_learner("simple_cnaps")()
    lite.build_for(size)
    import_weights(lite, "official_lite", parity_fixture())
    images = tf.image.resize(to_float_images(official["input/context_images_uint8"]), [size, size])
    normalised = ((images + 1) / 2 - np.array(IMAGENET_MEAN_RGB, np.float32)) / np.array(IMAGENET_STDDEV_RGB, np.float32)
    labels = tf.constant(official["input/context_labels"], tf.int32)
    outputs = []
    for learner, x in ((orbit, images), (lite, normalised)):
        film = learner.film_generator(task_embedding(learner.set_encoder, x))
        features = call_backbone(learner.backbone, x, film)
        outputs.append([film[5][0], film[17][1], features, learner.head_logits(features, labels, 5, features)])
    for got, expected in zip(*outputs):
        assert relative_error(got, expected) < TOLERANCE


def test_orbit_protonets_maps_onto_the_plain_efficientnet_backbone():
    """ORBIT ProtoNets holds only feature_extractor.*; it fills lite_tf's keras.applications EfficientNet-B0."""
    from lite_tf.backbones.film import call_backbone
    from lite_tf.backbones.film_efficientnet import efficientnet_b0_film

    state = {k: v for k, v in load_state_dict(parity_fixture()).items() if k.startswith("feature_extractor.")}
    learner = get_learner("protonets")(backbone="efficientnet_b0")
    learner.build_for(32)
    assert import_weights(learner, "orbit", state) == len(state) - 2 + 2  # no _fc; + input mean, variance
    film = efficientnet_b0_film(32)
    import_weights(film, "efficientnet_pytorch_b0", {k[len("feature_extractor."):]: v for k, v in state.items()},
                   input_convention="imagenet")
    images = tf.random.uniform([2, 32, 32, 3], -1, 1)
    assert relative_error(learner.backbone(images), call_backbone(film, images)) < TOLERANCE
