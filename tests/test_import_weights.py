"""Weights importer: PyTorch layouts, every parameter accounted for, file formats, the command line."""
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from lite_tf.backbones.resnet import resnet18_film
from lite_tf.weights import WeightsError, import_weights, load_state_dict
from lite_tf.weights.assign import WeightMapper


def torch_conv2d(x, w, b=None, groups=1):
    """PyTorch's Conv2d (stride 1, no padding) in NumPy: x [N, C, H, W], w [O, C/groups, kh, kw]."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    out = np.zeros((n, o, h - kh + 1, wd - kw + 1))
    per_group = o // groups
    for oc in range(o):
        g = oc // per_group
        for i in range(h - kh + 1):
            for j in range(wd - kw + 1):
                out[:, oc, i, j] = np.einsum("nckl,ckl->n", x[:, g * cg:(g + 1) * cg, i:i + kh, j:j + kw], w[oc])
    return out + (0 if b is None else b[None, :, None, None])


def planned(layer, method, state):
    mapper = WeightMapper(state, "test")
    getattr(mapper, method)(layer, "m")
    mapper.commit()


def test_conv_depthwise_and_linear_layouts_compute_what_pytorch_computes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 6, 6))
    w, b = rng.normal(size=(4, 3, 3, 2)), rng.normal(size=4)
    conv = keras.layers.Conv2D(4, (3, 2), padding="valid")
    conv.build((None, 6, 6, 3))
    planned(conv, "conv", {"m.weight": w, "m.bias": b})
    got = conv(np.transpose(x, (0, 2, 3, 1)).astype(np.float32)).numpy()
    np.testing.assert_allclose(np.transpose(got, (0, 3, 1, 2)), torch_conv2d(x, w, b), rtol=1e-4, atol=1e-4)

    dw = rng.normal(size=(3, 1, 3, 3))
    depthwise = keras.layers.DepthwiseConv2D(3, padding="valid", use_bias=False)
    depthwise.build((None, 6, 6, 3))
    planned(depthwise, "depthwise", {"m.weight": dw})
    got = depthwise(np.transpose(x, (0, 2, 3, 1)).astype(np.float32)).numpy()
    np.testing.assert_allclose(np.transpose(got, (0, 3, 1, 2)), torch_conv2d(x, dw, groups=3), rtol=1e-4, atol=1e-4)

    lw, lb = rng.normal(size=(5, 3)), rng.normal(size=5)
    dense = keras.layers.Dense(5)
    dense.build((None, 3))
    planned(dense, "dense", {"m.weight": lw, "m.bias": lb})
    v = rng.normal(size=(2, 3))
    np.testing.assert_allclose(dense(v.astype(np.float32)).numpy(), v @ lw.T + lb, rtol=1e-5, atol=1e-5)


def test_batch_norm_and_layer_norm_take_their_four_and_two_tensors():
    rng = np.random.default_rng(1)
    bn = keras.layers.BatchNormalization(epsilon=1e-5)
    bn.build((None, 4))
    state = {f"m.{k}": rng.uniform(0.5, 1.5, 4) for k in ("weight", "bias", "running_mean", "running_var")}
    planned(bn, "batch_norm", state)
    x = rng.normal(size=(3, 4))
    expected = (x - state["m.running_mean"]) / np.sqrt(state["m.running_var"] + 1e-5) * state["m.weight"] + state["m.bias"]
    np.testing.assert_allclose(bn(x.astype(np.float32), training=False).numpy(), expected, rtol=1e-5, atol=1e-5)
    ln = keras.layers.LayerNormalization()
    ln.build((None, 4))
    planned(ln, "layer_norm", {"m.weight": state["m.weight"], "m.bias": state["m.bias"]})
    np.testing.assert_allclose(ln.gamma.numpy(), state["m.weight"], rtol=1e-6)


def torchvision_resnet18_state(rng):
    """A state dict in torchvision's resnet18 naming and shapes (random values)."""
    state = {}

    def conv(name, out, inp, k):
        state[f"{name}.weight"] = rng.normal(size=(out, inp, k, k))

    def bn(name, c):
        for k in ("weight", "bias", "running_mean"):
            state[f"{name}.{k}"] = rng.normal(size=c)
        state[f"{name}.running_var"] = rng.uniform(0.5, 1.5, c)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inp = 64
    for stage, out in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{stage}.{block}"
            conv(f"{p}.conv1", out, inp if block == 0 else out, 3)
            bn(f"{p}.bn1", out)
            conv(f"{p}.conv2", out, out, 3)
            bn(f"{p}.bn2", out)
            if block == 0 and stage > 1:
                conv(f"{p}.downsample.0", out, inp, 1)
                bn(f"{p}.downsample.1", out)
        inp = out
    state["fc.weight"], state["fc.bias"] = rng.normal(size=(1000, 512)), rng.normal(size=1000)
    return state


def test_torchvision_resnet18_fills_every_variable():
    state = torchvision_resnet18_state(np.random.default_rng(2))
    model = resnet18_film(32)
    copied = import_weights(model, "torchvision_resnet18", state)
    assert copied == len(state) - 2 == len(model.weights)  # all but fc; every model variable
    np.testing.assert_array_equal(model.get_layer("layer2_0_down_conv").kernel.numpy(),
                                  np.transpose(state["layer2.0.downsample.0.weight"], (2, 3, 1, 0)).astype(np.float32))
    np.testing.assert_array_equal(model.get_layer("layer4_1_2_bn").moving_variance.numpy(),
                                  state["layer4.1.bn2.running_var"].astype(np.float32))


def test_missing_unused_and_misshaped_parameters_are_named_and_nothing_is_copied():
    rng = np.random.default_rng(3)
    model = resnet18_film(32)
    before = [w.numpy().copy() for w in model.weights]
    cases = {
        "layer3.1.bn1.running_var": ("missing from the state dict: 'layer3.1.bn1.running_var'", None),
        "extra.weight": ("not used by the model: 'extra.weight'", np.zeros(3)),
        "layer1.0.conv2.weight": ("'layer1.0.conv2.weight' has shape \\[64, 64, 5, 5\\]", rng.normal(size=(64, 64, 5, 5))),
    }
    for name, (message, value) in cases.items():
        state = torchvision_resnet18_state(rng)
        if value is None:
            del state[name]
        else:
            state[name] = value
        with pytest.raises(WeightsError, match=message + ".*Nothing was copied"):
            import_weights(model, "torchvision_resnet18", state)
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, new.numpy())


def test_npz_files_hold_param_arrays_and_torch_files_need_torch(tmp_path, monkeypatch):
    path = str(tmp_path / "state.npz")
    np.savez(path, **{"param/a.weight": np.ones((2, 3)), "param/n.num_batches_tracked": np.int64(5),
                      "output/logits": np.zeros(3)})
    state = load_state_dict(path)
    assert list(state) == ["a.weight"] and state["a.weight"].dtype == np.float32  # integer counters dropped
    np.savez(str(tmp_path / "other.npz"), weights=np.ones(3))
    with pytest.raises(WeightsError, match="holds no 'param/<name>' arrays"):
        load_state_dict(str(tmp_path / "other.npz"))
    with pytest.raises(WeightsError, match="does not exist"):
        load_state_dict(str(tmp_path / "missing.pt"))
    (tmp_path / "model.pt").write_bytes(b"not really")
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    with pytest.raises(WeightsError, match=r"needs torch: pip install -e \"\.\[torch\]\""):
        load_state_dict(str(tmp_path / "model.pt"))
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(WeightsError, match="expected a PyTorch file"):
        load_state_dict(str(tmp_path / "model.txt"))


def test_unknown_source_and_wrong_target_are_named():
    with pytest.raises(WeightsError, match="Unknown weights source 'caffe'"):
        import_weights(resnet18_film(32), "caffe", {})
    with pytest.raises(WeightsError, match="onto a built simple_cnaps learner"):
        import_weights(resnet18_film(32), "official_lite", {"x": np.zeros(1)})
    with pytest.raises(WeightsError, match="takes the options none; got \\['input_convention'\\]"):
        import_weights(resnet18_film(32), "torchvision_resnet18", {}, input_convention="imagenet")


def test_command_line_writes_a_backbone_file_that_the_backbone_loads(tmp_path):
    from lite_tf.weights.runs import import_backbone

    state = torchvision_resnet18_state(np.random.default_rng(4))
    checkpoint = str(tmp_path / "resnet18.npz")
    np.savez(checkpoint, **{f"param/{k}": v for k, v in state.items()})
    output = import_backbone("torchvision_resnet18", checkpoint, str(tmp_path / "r18.weights.h5"), image_size=32)
    assert set(os.listdir(tmp_path)) == {"resnet18.npz", "r18.weights.h5"}  # no temporary file left
    direct = resnet18_film(32)
    import_weights(direct, "torchvision_resnet18", checkpoint)
    loaded = resnet18_film(32, weights=output)
    images = tf.random.uniform([2, 32, 32, 3], -1, 1)
    from lite_tf.backbones.film import call_backbone
    np.testing.assert_allclose(call_backbone(loaded, images).numpy(), call_backbone(direct, images).numpy(), rtol=1e-6)
    from lite_tf.errors import ConfigError
    with pytest.raises(ConfigError, match="must end in .weights.h5"):
        import_backbone("torchvision_resnet18", checkpoint, str(tmp_path / "r18.h5"), image_size=32)


def orbit_resnet_simple_cnaps_state(rng):
    """An ORBIT Simple CNAPs ResNet-18 84 px state dict (FewShotRecogniser naming, random values)."""
    state = {f"feature_extractor.{k}": v for k, v in torchvision_resnet18_state(rng).items() if not k.startswith("fc.")}
    state["feature_extractor.conv1.weight"] = rng.normal(size=(64, 3, 5, 5))  # the 84 px stem
    inp = 3
    for i in range(1, 6):
        state[f"set_encoder.encoding_fn.layer{i}.0.weight"] = rng.normal(size=(64, inp, 3, 3))
        state[f"set_encoder.encoding_fn.layer{i}.0.bias"] = rng.normal(size=64)
        for k in ("weight", "bias", "running_mean"):
            state[f"set_encoder.encoding_fn.layer{i}.1.{k}"] = rng.normal(size=64)
        state[f"set_encoder.encoding_fn.layer{i}.1.running_var"] = rng.uniform(0.5, 1.5, 64)
        inp = 64
    for stage, maps in enumerate((64, 128, 256, 512)):
        for block in range(2):
            for layer in range(2):
                for part in ("gamma", "beta"):
                    g = f"feature_adapter.layers.{stage}.{part}_generators.{block}.{layer}"
                    state[f"{g}.linear1.weight"], state[f"{g}.linear1.bias"] = rng.normal(size=(64, 64)), rng.normal(size=64)
                    state[f"{g}.layernorm.weight"], state[f"{g}.layernorm.bias"] = rng.normal(size=64), rng.normal(size=64)
                    state[f"{g}.linear2.weight"], state[f"{g}.linear2.bias"] = rng.normal(size=(maps, 64)), rng.normal(size=maps)
                    state[f"feature_adapter.layers.{stage}.{part}_regularizers.{block}.{layer}"] = rng.normal(size=maps)
    return state


def test_orbit_resnet18_simple_cnaps_maps_every_parameter_and_needs_imagenet_inputs():
    from lite_tf.backbones.set_encoder import set_encoder
    from lite_tf.backbones.resnet import resnet18_film_84
    from lite_tf.registry import get_learner, load_plugins

    load_plugins()
    state = orbit_resnet_simple_cnaps_state(np.random.default_rng(5))
    learner = get_learner("simple_cnaps")(backbone=resnet18_film_84(84, input_normalization="imagenet"),
                                          set_encoder=set_encoder(84, input_normalization="imagenet"))
    learner.build_for(84)
    assert import_weights(learner, "orbit", state) == len(state)
    # stage 2, block 1, second conv of the block -> site 4 * 2 + 2 * 1 + 1 = 11 (layer3_1_2_film)
    from lite_tf.backbones.film import film_sites
    assert film_sites(learner.backbone)[11] == ("layer3_1_2_film", 256)
    np.testing.assert_array_equal(learner.film_generator.beta_regularizers[11].numpy(),
                                  state["feature_adapter.layers.2.beta_regularizers.1.1"].astype(np.float32))
    plain = get_learner("simple_cnaps")(backbone=resnet18_film_84(84, input_normalization="imagenet"),
                                        set_encoder=set_encoder(84))
    plain.build_for(84)
    with pytest.raises(WeightsError, match="ORBIT feeds ImageNet-normalised frames.*set_encoder.input_normalization"):
        import_weights(plain, "orbit", state)


def test_imagenet_input_normalization_of_set_encoder_and_resnet():
    from lite_tf.backbones.input_normalization import IMAGENET_MEAN_RGB, IMAGENET_STDDEV_RGB
    from lite_tf.backbones.set_encoder import set_encoder

    images = tf.random.uniform([2, 32, 32, 3], -1, 1)
    normalised = ((images + 1) / 2 - np.array(IMAGENET_MEAN_RGB, np.float32)) / np.array(IMAGENET_STDDEV_RGB, np.float32)
    for build in (lambda n: set_encoder(32, input_normalization=n), lambda n: resnet18_film(32, input_normalization=n)):
        plain, orbit = build(None), build("imagenet")
        assert len(plain.weights) == len(orbit.weights)  # constants, not weights
        for a, b in zip(orbit.weights, plain.weights):
            b.assign(a)
        from lite_tf.backbones.film import call_backbone
        np.testing.assert_allclose(call_backbone(orbit, images).numpy(), call_backbone(plain, normalised).numpy(),
                                   rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="input_normalization must be one of"):
        set_encoder(32, input_normalization="caffe")
    assert resnet18_film(32, stem_padding=1).get_layer("stem_pad").padding == ((1, 1), (1, 1))  # ORBIT's 224 px stem


def test_orbit_cnaps_classifier_hypernetwork_is_the_official_versa_classifier():
    """ORBIT CNAPs = the Simple CNAPs networks + classifier.{weight,bias}_processor.linear{1,2,3};
    w_c = mu_c + L3 elu(L2 elu(L1 mu_c)), b_c = L3' elu(L2' elu(L1' mu_c)) (width 1, no residual)."""
    from lite_tf.backbones.resnet import resnet18_film_84
    from lite_tf.backbones.set_encoder import set_encoder
    from lite_tf.registry import get_learner, load_plugins

    load_plugins()
    rng = np.random.default_rng(6)
    state = orbit_resnet_simple_cnaps_state(rng)
    for block, width in (("weight_processor", 512), ("bias_processor", 1)):
        inp = 512
        for i in (1, 2, 3):
            state[f"classifier.{block}.linear{i}.weight"] = rng.normal(size=(width, inp)) / np.sqrt(inp)
            state[f"classifier.{block}.linear{i}.bias"] = rng.normal(size=width)
            inp = width
    learner = get_learner("cnaps")(backbone=resnet18_film_84(84, input_normalization="imagenet"),
                                   set_encoder=set_encoder(84, input_normalization="imagenet"))
    learner.build_for(84)
    assert import_weights(learner, "orbit", state) == len(state)
    elu = lambda v: np.where(v > 0, v, np.expm1(np.minimum(v, 0)))
    block = lambda x, p: (lambda h: h @ state[f"{p}.linear3.weight"].T + state[f"{p}.linear3.bias"])(
        elu(elu(x @ state[f"{p}.linear1.weight"].T + state[f"{p}.linear1.bias"]) @ state[f"{p}.linear2.weight"].T
            + state[f"{p}.linear2.bias"]))
    means = rng.normal(size=(3, 512)).astype(np.float32)
    weights, biases = learner.hypernet(means)
    np.testing.assert_allclose(weights.numpy(), means + block(means, "classifier.weight_processor"), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(biases.numpy(), block(means, "classifier.bias_processor")[:, 0], rtol=1e-4, atol=1e-4)


def efficientnet_pytorch_to_torchvision(state):
    """EfficientNet-PyTorch names -> torchvision efficientnet_b0 names (same tensors and shapes)."""
    repeats, expands = (1, 2, 2, 3, 3, 4, 1), (False,) + (True,) * 6
    blocks = [(s + 1, j, expands[s]) for s in range(7) for j in range(repeats[s])]
    out = {}
    for name, value in state.items():
        if name.startswith("_blocks."):
            index, rest = name[len("_blocks."):].split(".", 1)
            stage, j, expands_ = blocks[int(index)]
            part, suffix = rest.split(".", 1)
            k = 1 if expands_ else 0
            target = {"_expand_conv": "0.0", "_bn0": "0.1", "_depthwise_conv": f"{k}.0", "_bn1": f"{k}.1",
                      "_se_reduce": f"{k + 1}.fc1", "_se_expand": f"{k + 1}.fc2", "_project_conv": f"{k + 2}.0",
                      "_bn2": f"{k + 2}.1"}[part]
            out[f"features.{stage}.{j}.block.{target}.{suffix}"] = value
        else:
            part, suffix = name.split(".", 1)
            prefix = {"_conv_stem": "features.0.0", "_bn0": "features.0.1", "_conv_head": "features.8.0",
                      "_bn1": "features.8.1", "_fc": "classifier.1"}[part]
            out[f"{prefix}.{suffix}"] = value
    return out


def efficientnet_pytorch_b0_state(rng):
    """Random EfficientNet-PyTorch efficientnet-b0 tensors, shaped from lite_tf's B0 (names are the point)."""
    from lite_tf.backbones.film_efficientnet import efficientnet_b0_film
    from lite_tf.weights.efficientnet import b0_block_names

    model = efficientnet_b0_film(32)
    state = {}

    def add(layer, name, kind):
        layer = model.get_layer(layer)
        if kind == "bn":
            for key in ("weight", "bias", "running_mean"):
                state[f"{name}.{key}"] = rng.normal(size=layer.gamma.shape)
            state[f"{name}.running_var"] = rng.uniform(0.5, 1.5, layer.gamma.shape)
            return
        kh, kw, cin, cout = layer.kernel.shape
        state[f"{name}.weight"] = rng.normal(size=(cin, 1, kh, kw) if kind == "dw" else (cout, cin, kh, kw)) * 0.1
        if layer.use_bias:
            state[f"{name}.bias"] = rng.normal(size=cout)

    add("stem_conv", "_conv_stem", "conv"), add("stem_bn", "_bn0", "bn")
    for i, (p, expands) in enumerate(b0_block_names()):
        if expands:
            add(f"{p}expand_conv", f"_blocks.{i}._expand_conv", "conv"), add(f"{p}expand_bn", f"_blocks.{i}._bn0", "bn")
        add(f"{p}dwconv", f"_blocks.{i}._depthwise_conv", "dw"), add(f"{p}bn", f"_blocks.{i}._bn1", "bn")
        add(f"{p}se_reduce", f"_blocks.{i}._se_reduce", "conv"), add(f"{p}se_expand", f"_blocks.{i}._se_expand", "conv")
        add(f"{p}project_conv", f"_blocks.{i}._project_conv", "conv"), add(f"{p}project_bn", f"_blocks.{i}._bn2", "bn")
    add("top_conv", "_conv_head", "conv"), add("top_bn", "_bn1", "bn")
    state["_fc.weight"], state["_fc.bias"] = rng.normal(size=(1000, 1280)), rng.normal(size=1000)
    return state


def test_torchvision_efficientnet_b0_needs_its_padding_and_epsilon_and_fills_every_variable():
    from lite_tf.backbones.film_efficientnet import efficientnet_b0_film

    state = efficientnet_pytorch_to_torchvision(efficientnet_pytorch_b0_state(np.random.default_rng(7)))
    assert "features.2.1.block.3.1.running_var" in state and "features.1.0.block.1.fc2.weight" in state
    with pytest.raises(WeightsError, match="padding='symmetric', batch_norm_epsilon=1e-5"):
        import_weights(efficientnet_b0_film(32), "torchvision_efficientnet_b0", state)
    model = efficientnet_b0_film(32, padding="symmetric", batch_norm_epsilon=1e-5)
    assert import_weights(model, "torchvision_efficientnet_b0", state) == len(state) - 2 + 2
    assert all(layer.epsilon == 1e-5 for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    # PyTorch's padding=1 on the stride-2 stem: one zero row/column on every side
    images = tf.random.uniform([1, 32, 32, 3], -1, 1)
    stem_in = keras.Model(model.inputs[0], model.get_layer("normalization").output)(images)
    expected = tf.nn.conv2d(stem_in, model.get_layer("stem_conv").kernel, 2, [[0, 0], [1, 1], [1, 1], [0, 0]])
    got = keras.Model(model.inputs[0], model.get_layer("stem_conv").output)(images)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_efficientnet_pytorch_names_fill_the_keras_application(tmp_path):
    from lite_tf.weights.runs import import_backbone
    from lite_tf.backbones.film_efficientnet import efficientnet_b0_film

    state = efficientnet_pytorch_b0_state(np.random.default_rng(8))
    checkpoint = str(tmp_path / "b0.npz")
    np.savez(checkpoint, **{f"param/{k}": v for k, v in state.items()})
    output = import_backbone("efficientnet_pytorch_b0", checkpoint, str(tmp_path / "b0.weights.h5"), image_size=32)
    direct = efficientnet_b0_film(32)
    assert import_weights(direct, "efficientnet_pytorch_b0", checkpoint) == len(state) - 2 + 2
    loaded = efficientnet_b0_film(32, weights=output)
    images = tf.random.uniform([2, 32, 32, 3], -1, 1)
    from lite_tf.backbones.film import call_backbone
    np.testing.assert_allclose(call_backbone(loaded, images).numpy(), call_backbone(direct, images).numpy(),
                               rtol=1e-5, atol=1e-6)
