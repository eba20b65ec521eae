"""Tests for bt_helpers.models: exact sizes, names, shapes, errors and FLOPs of the networks."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from bt_helpers import config, models

# torchvision's resnet18 / resnet34 parameter counts (1000-class ImageNet models), minus their
# final fully connected layer (512 * 1000 + 1000 = 513,000 parameters).
TORCHVISION_PARAMS = {18: 11_689_512 - 513_000, 34: 21_797_672 - 513_000}


def resnet_params_by_formula(depth, stem, width, in_channels=3):
    """(trainable, non-trainable) parameters of a ResNet counted from its definition."""
    blocks = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}[depth]
    k = 3 if stem == "cifar" else 7
    trainable = k * k * in_channels * width + 2 * width  # stem conv (no bias) + BN gamma, beta
    bn_channels = width
    c_in = width
    for stage, n_blocks in enumerate(blocks):
        c_out = width * 2 ** stage
        for block in range(n_blocks):
            stride = 2 if (block == 0 and stage > 0) else 1
            trainable += 9 * c_in * c_out + 9 * c_out * c_out + 2 * (2 * c_out)
            bn_channels += 2 * c_out
            if stride != 1 or c_in != c_out:  # projection shortcut: 1x1 conv + BN
                trainable += c_in * c_out + 2 * c_out
                bn_channels += c_out
            c_in = c_out
    return trainable, 2 * bn_channels  # BN moving mean and variance are non-trainable


def n_params(weights):
    return int(sum(np.prod(w.shape) for w in weights))


@pytest.mark.parametrize("depth", [18, 34])
@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_resnet_parameter_counts_are_exact(depth, stem):
    encoder = models.resnet(depth, stem, width=64)
    trainable, frozen = resnet_params_by_formula(depth, stem, 64)
    expected = {(18, "imagenet"): 11_176_512, (18, "cifar"): 11_168_832,
                (34, "imagenet"): 21_284_672, (34, "cifar"): 21_276_992}[(depth, stem)]
    assert trainable == expected
    if stem == "imagenet":  # the same network as torchvision's, without the classifier
        assert trainable == TORCHVISION_PARAMS[depth]
    else:  # a 3x3x3x64 stem conv instead of 7x7x3x64
        assert trainable == TORCHVISION_PARAMS[depth] - (7 * 7 - 3 * 3) * 3 * 64
    assert n_params(encoder.trainable_weights) == trainable
    assert n_params(encoder.non_trainable_weights) == frozen
    assert encoder.count_params() == trainable + frozen


@pytest.mark.parametrize("depth", [10, 18])
def test_small_width_parameter_count_matches_formula_for_the_teaching_depths(depth):
    encoder = models.resnet(depth, "cifar", width=24, input_shape=(None, None, 3))
    trainable, frozen = resnet_params_by_formula(depth, "cifar", 24)
    assert n_params(encoder.trainable_weights) == trainable
    assert n_params(encoder.non_trainable_weights) == frozen
    blocks = [layer.name for layer in encoder.layers if layer.name.endswith("_add")]
    assert len(blocks) == sum(models.STAGE_BLOCKS[depth])


def test_small_width_parameter_count_matches_formula():
    encoder = models.resnet(34, "cifar", width=8, input_shape=(32, 32, 1))
    trainable, frozen = resnet_params_by_formula(34, "cifar", 8, in_channels=1)
    assert n_params(encoder.trainable_weights) == trainable
    assert n_params(encoder.non_trainable_weights) == frozen


@pytest.mark.parametrize("dims, input_dim, final_bias", [
    ((2048, 2048, 2048), 512, False),   # solo-learn's CIFAR projector on a ResNet-18
    ((512, 512, 512), 128, False),      # a narrow three-layer projector
    ((1000, 1000, 500), 256, True),     # uneven widths, with a final bias (as in 2021)
    ((64,), 16, False),                 # a single linear layer
])
def test_projector_parameter_counts(dims, input_dim, final_bias):
    head = models.projector(dims, input_dim=input_dim, final_bias=final_bias)
    sizes = (input_dim,) + dims
    expected = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))  # kernels, no bias
    expected += sum(2 * d for d in dims[:-1])                     # BN gamma and beta
    expected += dims[-1] if final_bias else 0
    assert n_params(head.trainable_weights) == expected
    assert n_params(head.non_trainable_weights) == sum(2 * d for d in dims[:-1])
    if dims == (2048, 2048, 2048):
        assert expected == 9_445_376


def test_projector_layers_alternate_dense_bn_relu_and_only_last_may_have_bias():
    head = models.projector((32, 16, 8), input_dim=4)
    assert [layer.name for layer in head.layers] == [
        "projector_dense1", "projector_bn1", "projector_relu1",
        "projector_dense2", "projector_bn2", "projector_relu2", "projector_dense3"]
    assert all(not layer.use_bias for layer in head.layers
               if isinstance(layer, keras.layers.Dense))
    with_bias = models.projector((32, 8), input_dim=4, final_bias=True)
    assert [layer.use_bias for layer in with_bias.layers
            if isinstance(layer, keras.layers.Dense)] == [False, True]


def test_layer_names_are_readable_and_follow_the_architecture():
    names = [layer.name for layer in models.resnet(34, "imagenet", width=4).layers]
    for name in ["images", "stem_conv", "stem_bn", "stem_relu", "stem_pool",
                 "stage1_block3_conv2", "stage2_block1_conv1", "stage2_block1_bn1",
                 "stage2_block1_relu1", "stage2_block1_shortcut_conv",
                 "stage2_block1_shortcut_bn", "stage2_block1_add", "stage2_block1_out",
                 "stage3_block6_conv2", "stage4_block3_out", "avg_pool"]:
        assert name in names
    assert names[-1] == "avg_pool"
    assert "stage3_block7_conv1" not in names  # ResNet-34 has 3, 4, 6, 3 blocks
    assert "stage1_block1_shortcut_conv" not in names  # same shape: identity shortcut
    assert "stage2_block2_shortcut_conv" not in names
    cifar = [layer.name for layer in models.resnet(18, "cifar", width=4).layers]
    assert "stem_pool" not in cifar and "stage2_block3_conv1" not in cifar
    assert models.resnet(18, "cifar", width=4).name == "resnet18_cifar_w4"
    assert models.resnet(34, "imagenet", width=64).name == "resnet34_imagenet"


def test_stems_and_bias_free_convolutions():
    for stem, kernel, stride in [("cifar", 3, 1), ("imagenet", 7, 2)]:
        encoder = models.resnet(18, stem, width=4)
        conv = encoder.get_layer("stem_conv")
        assert conv.kernel_size == (kernel, kernel) and conv.strides == (stride, stride)
        convs = [layer for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D)]
        assert len(convs) == 1 + 16 + 3  # stem, 8 blocks x 2, 3 projection shortcuts
        assert not any(layer.use_bias for layer in convs)


def test_zero_init_residual_sets_the_last_gamma_of_each_branch():
    encoder = models.resnet(18, "cifar", width=4)
    for layer in encoder.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            expected = 0.0 if layer.name.endswith("_bn2") else 1.0
            np.testing.assert_array_equal(layer.gamma.numpy(), expected)
    plain = models.resnet(18, "cifar", width=4, zero_init_residual=False)
    np.testing.assert_array_equal(plain.get_layer("stage1_block1_bn2").gamma.numpy(), 1.0)


def test_a_fresh_block_with_zero_init_is_its_shortcut():
    inputs = keras.Input((6, 6, 4))
    block = keras.Model(inputs, models.basic_block(inputs, 4, name="b", seed=0))
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype("float32")
    # Inference mode, fresh BN statistics: the residual branch is gamma * (...) + beta = 0.
    np.testing.assert_allclose(block(x, training=False).numpy(), np.maximum(x, 0), atol=1e-6)


@pytest.mark.parametrize("stem, side", [("cifar", 32), ("cifar", 8), ("cifar", 13),
                                        ("imagenet", 32), ("imagenet", 45), ("imagenet", 64)])
def test_feature_map_sizes_match_the_model(stem, side):
    width = 4
    encoder = models.resnet(18, stem, width=width, input_shape=(side, side, 3))
    rows = models.feature_map_sizes(stem, side, width=width)
    layer_of = {"stem conv": "stem_conv", "stem max-pool": "stem_pool",
                **{f"stage{i}": f"stage{i}_block2_out" for i in range(1, 5)}}
    assert rows[0] == ("input", side, 3)
    for row in rows[1:]:
        assert tuple(encoder.get_layer(layer_of[row.name]).output.shape[1:]) == (
            row.size, row.size, row.channels)
    features = encoder(np.zeros((2, side, side, 3), "float32"))
    assert tuple(features.shape) == (2, 8 * width)


def test_the_imagenet_stem_reaches_8x8_before_the_first_block_on_cifar_images():
    sizes = {row.name: row.size for row in models.feature_map_sizes("imagenet", 32)}
    assert sizes == {"input": 32, "stem conv": 16, "stem max-pool": 8, "stage1": 8,
                     "stage2": 4, "stage3": 2, "stage4": 1}
    sizes = {row.name: row.size for row in models.feature_map_sizes("cifar", 32)}
    assert sizes == {"input": 32, "stem conv": 32, "stage1": 32, "stage2": 16, "stage3": 8,
                     "stage4": 4}


def test_any_input_size_above_the_minimum_works():
    assert models.min_input_size("cifar") == 8
    assert models.min_input_size("imagenet") == 32
    encoder = models.resnet(18, "cifar", width=4, input_shape=(None, None, 3))
    for height, width in [(8, 8), (9, 17), (40, 40)]:
        out = encoder(np.ones((1, height, width, 3), "float32"))
        assert tuple(out.shape) == (1, 32)
    wide = models.resnet(18, "imagenet", width=4, input_shape=(32, 48, 1))
    assert tuple(wide.output.shape) == (None, 32)


def test_errors_list_the_choices_and_the_minimum_size():
    with pytest.raises(ValueError, match=r"depth=50.*10, 18, 34"):
        models.resnet(50)
    with pytest.raises(ValueError, match=r"stem='resnet'.*'cifar', 'imagenet'"):
        models.resnet(18, "resnet")
    with pytest.raises(ValueError, match=r"at least 32x32 pixels.*input_shape=\(28, 28, 3\)"):
        models.resnet(18, "imagenet", input_shape=(28, 28, 3))
    with pytest.raises(ValueError, match=r"at least 8x8 pixels"):
        models.resnet(34, "cifar", input_shape=(32, 7, 3))
    with pytest.raises(ValueError, match=r"width=0"):
        models.resnet(18, width=0)
    with pytest.raises(ValueError, match=r"at least 32x32.*input_size=16"):
        models.feature_map_sizes("imagenet", 16)
    with pytest.raises(ValueError, match=r"stem='x'"):
        models.min_input_size("x")
    with pytest.raises(ValueError, match=r"dims=\(\)"):
        models.projector(())
    with pytest.raises(ValueError, match=r"dims=\(64, 0\)"):
        models.projector((64, 0))
    with pytest.raises(ValueError, match=r"takes 16 features but the encoder gives 32"):
        models.barlow_twins_network(models.resnet(18, width=4),
                                    models.projector((8,), input_dim=16))


def test_network_shares_weights_and_exposes_the_encoder():
    preset = config.get_preset("ci")
    net = models.build_from_preset(preset, seed=0)
    assert net.feature_dim == 8 * preset.width and net.proj_dim == preset.proj_dim
    assert tuple(net.encoder.input.shape) == (None, preset.image_size, preset.image_size, 3)
    assert net.model.get_layer(net.encoder.name) is net.encoder
    assert net.model.get_layer(net.projector.name) is net.projector
    assert n_params(net.model.trainable_weights) == (
        n_params(net.encoder.trainable_weights) + n_params(net.projector.trainable_weights))
    x = np.random.default_rng(1).uniform(size=(4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(net(x).numpy(),
                               net.projector(net.encoder(x)).numpy(), rtol=1e-5, atol=1e-5)


def test_lazy_projector_builds_on_first_call():
    net = models.barlow_twins_network(models.resnet(18, width=4), models.projector((16, 8)))
    assert net.proj_dim == 8
    assert net.projector.layers[0].kernel.shape == (32, 16)


def test_forward_in_training_and_inference_mode():
    preset = config.get_preset("ci")
    net = models.build_from_preset(preset, seed=0)
    x = np.random.default_rng(2).uniform(size=(8, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(net(x).numpy(), net(x).numpy())  # inference: deterministic
    bn = net.encoder.get_layer("stem_bn")
    before = bn.moving_mean.numpy().copy()
    with tf.GradientTape() as tape:
        z = net(x, training=True)  # (N, D)
        loss = tf.reduce_mean(tf.square(z))
    assert tuple(z.shape) == (8, preset.proj_dim)
    assert np.all(np.isfinite(z.numpy()))
    assert not np.allclose(bn.moving_mean.numpy(), before)  # batch statistics were used
    assert not np.allclose(z.numpy(), net(x).numpy())  # training mode is not inference mode
    grads = tape.gradient(loss, net.model.trainable_weights)
    assert all(g is not None for g in grads)
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def test_seed_makes_initialisation_reproducible():
    a = models.resnet(18, width=4, seed=3)
    b = models.resnet(18, width=4, seed=3)
    c = models.resnet(18, width=4, seed=4)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    assert not np.allclose(a.get_layer("stem_conv").kernel.numpy(),
                           c.get_layer("stem_conv").kernel.numpy())
    kernels = [a.get_layer(n).kernel.numpy() for n in ("stage1_block1_conv1", "stage1_block1_conv2")]
    assert not np.allclose(kernels[0], kernels[1])  # each layer gets its own seed


def test_he_initialisation_scale():
    kernel = models.resnet(18, width=8, seed=0).get_layer("stage4_block2_conv1").kernel.numpy()
    fan_out = 3 * 3 * 64  # (3, 3, 64, 64) kernel: 36,864 draws
    assert kernel.std() == pytest.approx(math.sqrt(2 / fan_out), rel=0.03)
    assert abs(kernel.mean()) < 0.1 * kernel.std()


def test_flops_match_an_independent_count_and_torchvision():
    def conv_flops(stem, side, width):
        """2 * multiply-adds of every convolution, from the feature-map sizes."""
        rows = {r.name: r for r in models.feature_map_sizes(stem, side, width)}
        k = 3 if stem == "cifar" else 7
        total = 2 * rows["stem conv"].size ** 2 * k * k * 3 * width
        c_in = width
        for stage, n_blocks in enumerate((2, 2, 2, 2), start=1):
            row = rows[f"stage{stage}"]
            c = row.channels
            per_position = 9 * c_in * c + 9 * c * c + 2 * (n_blocks - 1) * 9 * c * c
            per_position += c_in * c if c_in != c or stage > 1 else 0
            total += 2 * row.size ** 2 * per_position
            c_in = c
        return total

    for stem, side, width in [("cifar", 32, 64), ("imagenet", 32, 64), ("cifar", 40, 8)]:
        encoder = models.resnet(18, stem, width, input_shape=(side, side, 3))
        assert models.count_flops(encoder) == conv_flops(stem, side, width)
    # torchvision's ResNet-18 at 224x224: 1.814 GMACs including its 512x1000 classifier.
    big = models.resnet(18, "imagenet", 64, input_shape=(224, 224, 3))
    assert round((models.count_flops(big) / 2 + 512 * 1000) / 1e9, 3) == 1.814
    # The projector adds 2 * in * out per Dense; nested models are counted with a prefix.
    net = models.barlow_twins_network(models.resnet(18, width=4), models.projector((16, 8)))
    by_layer = models.flops_by_layer(net.model)
    assert by_layer["projector/projector_dense1"] == 2 * 32 * 16
    assert by_layer["projector/projector_dense2"] == 2 * 16 * 8
    assert models.count_flops(net.model) == (models.count_flops(net.encoder)
                                             + 2 * (32 * 16 + 16 * 8))


def test_flops_need_a_fixed_input_size():
    encoder = models.resnet(18, width=4, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="fixed input_shape"):
        models.count_flops(encoder)
