# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (barlow-twins-course)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · ResNet-34 and the projector
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/barlow-twins-course/barlow-twins-course/blob/main/notebooks/04_resnet34.ipynb)
#
# Barlow Twins trains two networks stacked on each other: an **encoder** (a ResNet) that turns
# an image into a feature vector `h`, and a **projector** (a small MLP) that turns `h` into the
# embedding `z` on which the loss of notebooks 02-03 is computed. This notebook builds both.
#
# **What you will learn**
# - what a residual block computes, by writing one with plain TensorFlow ops and checking it
#   against `bt_helpers.models`;
# - why the *stem* (the first layers) matters on 32x32 images: the ImageNet stem that the 2021
#   Keras example used shrinks CIFAR images to 8x8 before the first residual block;
# - what each variant costs in parameters, FLOPs and seconds on this machine;
# - why the projector is so wide, and why evaluation throws it away and keeps the encoder.
#
# **Runtime**: under half a minute with the `teaching` preset on 2 CPU cores (22 s measured);
# well under a minute with `ci`. No GPU needed.
#
# **Prerequisites**: notebooks 02-03 (the loss acts on `z`); what a convolution and BatchNorm
# compute.

# %%
# Colab only: install the course package, and use the full preset on a GPU runtime.
# Outside Colab this cell does nothing (`make lab` has installed everything).
import os
import shutil
import subprocess
import sys

if "google.colab" in sys.modules:
    REPO_URL = "https://github.com/barlow-twins-course/barlow-twins-course"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{REPO_URL}"], check=True)
    if shutil.which("nvidia-smi") and subprocess.run(["nvidia-smi"]).returncode == 0:
        os.environ.setdefault("BT_PRESET", "full")

# %%
import time

import keras
import numpy as np
import tensorflow as tf

import bt_helpers
from bt_helpers import models, plots, train
from bt_helpers.config import get_preset

preset, images = bt_helpers.start()

# %% [markdown]
# ## 1. The residual block, by hand
#
# A ResNet is a stack of *residual blocks*. The "basic" block of ResNet-18 and ResNet-34
# computes
#
# $$y = \mathrm{relu}\big(F(x) + s(x)\big), \qquad
#   F(x) = \mathrm{BN}_2(\mathrm{conv}_2(\mathrm{relu}(\mathrm{BN}_1(\mathrm{conv}_1(x))))),$$
#
# two 3x3 convolutions with BatchNorm, added to a *shortcut* `s(x)`. The shortcut is the
# identity when the block keeps the shape; when the block halves the resolution (stride 2) or
# changes the number of channels, it is a 1x1 convolution with the same stride followed by
# BatchNorm (a *projection shortcut*), so that the two terms can be added.
#
# Why add `x` back? The block only has to learn a *correction* `F` to its input, and the
# gradient reaches early layers through the shortcuts without passing through every
# convolution. The official Barlow Twins code even starts each block as "shortcut only": the
# last BatchNorm's scale `gamma` is initialised to zero (`zero_init_residual=True`, our default),
# so `F(x) = 0` at the start and deep networks begin almost as shallow ones.
#
# The convolutions have **no bias**: BatchNorm subtracts the mean of each channel right after
# them, which would cancel any bias, and its own shift `beta` plays that role.
#
# Here is a block written with plain TensorFlow ops; inference-mode BatchNorm is
# `gamma * (x - moving_mean) / sqrt(moving_var + epsilon) + beta`.

# %%
def batch_norm_by_hand(x, bn):
    """Inference-mode BatchNorm with the statistics and parameters of the Keras layer `bn`."""
    return (bn.gamma * (x - bn.moving_mean) / tf.sqrt(bn.moving_variance + bn.epsilon)
            + bn.beta)


def block_by_hand(x, block, name, stride):
    """relu(F(x) + shortcut(x)), reading the weights of the package's block called `name`."""
    layer = lambda suffix: block.get_layer(f"{name}_{suffix}")
    conv = lambda t, suffix, s: tf.nn.conv2d(t, layer(suffix).kernel, s, padding="SAME")
    y = tf.nn.relu(batch_norm_by_hand(conv(x, "conv1", stride), layer("bn1")))
    y = batch_norm_by_hand(conv(y, "conv2", 1), layer("bn2"))
    if stride != 1 or x.shape[-1] != y.shape[-1]:  # projection shortcut
        shortcut = batch_norm_by_hand(conv(x, "shortcut_conv", stride), layer("shortcut_bn"))
    else:
        shortcut = x
    return tf.nn.relu(y + shortcut)

# %% [markdown]
# Now the package's `models.basic_block` on a toy batch: 2 "images" of 8x8 pixels with 4
# channels, going into a block with stride 2 and 8 filters (so it needs a projection shortcut).
# We give every BatchNorm random statistics and parameters, so that nothing is trivially 0 or 1,
# and compare.

# %%
# NBVAL_CHECK_OUTPUT
rng = np.random.default_rng(0)
x = tf.constant(rng.normal(size=(2, 8, 8, 4)), tf.float32)  # (batch, height, width, channels)
inputs = keras.Input((8, 8, 4))
block = keras.Model(inputs, models.basic_block(inputs, filters=8, stride=2, name="toy", seed=0))
for layer in block.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
        for variable in (layer.gamma, layer.beta, layer.moving_mean):
            variable.assign(rng.normal(size=variable.shape))
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=layer.moving_variance.shape))

print("layers:", [layer.name for layer in block.layers[1:]])
package = block(x, training=False)
by_hand = block_by_hand(x, block, "toy", stride=2)
print("input", tuple(x.shape), "-> output", tuple(package.shape))
np.testing.assert_allclose(by_hand.numpy(), package.numpy(), rtol=1e-5, atol=1e-5)
print("hand-written block == models.basic_block:", True)

# %% [markdown]
# And with `zero_init_residual=True` (the default), a freshly built block is its shortcut
# followed by a ReLU: the residual branch ends in `0 * (...) + 0`.

# %%
# NBVAL_CHECK_OUTPUT
inputs = keras.Input((8, 8, 4))
fresh = keras.Model(inputs, models.basic_block(inputs, filters=4, name="fresh", seed=0))
same = np.allclose(fresh(x, training=False).numpy(), tf.nn.relu(x).numpy(), atol=1e-6)
print("fresh identity-shortcut block computes relu(x):", same)

# %% [markdown]
# ## 2. Why the stem matters on 32x32 images
#
# A ResNet is a *stem*, four *stages* of residual blocks, and global average pooling. The stages
# have `width x (1, 2, 4, 8)` channels (64, 128, 256, 512 in the paper's ResNets); stages 2-4
# start with a stride-2 block, so each halves the resolution. ResNet-18 and ResNet-34 differ
# only in how many blocks each stage has: (2, 2, 2, 2) and (3, 4, 6, 3).
#
# The **ImageNet stem** (a 7x7 convolution with stride 2, then a 3x3 max-pool with stride 2)
# was designed for 224x224 photos: it divides the side by 4, so the first block works at 56x56
# and the last at 7x7. The 2021 Keras example kept it for CIFAR-10. On a 32x32 image it leaves
# **8x8 before the first block** and **1x1 in the last stage**: a single "pixel" of 512
# channels, on which a 3x3 convolution uses only its centre weight, since the other 8 of its 9
# taps fall on zero padding. The **CIFAR stem** (one 3x3 stride-1 convolution, no max-pool)
# keeps 32x32 for the first stage and 4x4 at the end. (The 2021 example also zero-padded the
# image by 3 pixels before the stem, so its maps were 10, 5, 3 and 2 pixels wide, their outer
# ring computed mostly from padding: the same problem.)
#
# The last column below counts, for the map size of that row, the share of 3x3 taps that land
# on real pixels rather than on padding, `((3s - 2) / 3s)^2` for an `s x s` map.

# %%
# NBVAL_CHECK_OUTPUT
def share_on_pixels(s):
    """Share of a 3x3 'same' convolution's taps that fall inside an s x s map."""
    return ((3 * s - 2) / (3 * s)) ** 2

tables = {f"{stem} stem": models.feature_map_sizes(stem, input_size=32, width=64)
          for stem in models.STEMS}
print(f"{'after':14s}" + "".join(f"{label:>24s}" for label in tables))
for name in ["input", "stem conv", "stem max-pool", "stage1", "stage2", "stage3", "stage4"]:
    cells = []
    for rows in tables.values():
        row = {r.name: r for r in rows}.get(name)
        cells.append(f"{row.size}x{row.size}x{row.channels} ({share_on_pixels(row.size):.0%})"
                     if row else "-")
    print(f"{name:14s}" + "".join(f"{c:>24s}" for c in cells))
print("minimum input side:", {stem: models.min_input_size(stem) for stem in models.STEMS})

# %% [markdown]
# The same sizes, drawn to scale. The red square is where the ImageNet stem's first residual
# block starts: it never sees the image at more than 8x8.

# %%
fig = plots.plot_feature_map_sizes(tables)

# %% [markdown]
# These sizes were computed by a formula (each stride-2 layer maps `n` pixels to
# `ceil(n / 2)`). The models themselves agree: here are the output shapes of the stem and of
# each stage's last block, read from the built encoders at the preset's width.

# %%
side = images.image_shape[0]  # CIFAR-10's 32x32 (the ImageNet stem needs at least 32)
for stem in models.STEMS:
    encoder = models.resnet(preset.depth, stem, preset.width, input_shape=(side, side, 3))
    expected = models.feature_map_sizes(stem, side, preset.width)
    last = {f"stage{i}": f"stage{i}_block{n}_out"
            for i, n in enumerate(models.STAGE_BLOCKS[preset.depth], start=1)}
    layer_names = {"stem conv": "stem_conv", "stem max-pool": "stem_pool", **last}
    print(f"{encoder.name}:")
    for row in expected[1:]:
        shape = tuple(encoder.get_layer(layer_names[row.name]).output.shape[1:])
        assert shape == (row.size, row.size, row.channels), (row, shape)
        print(f"  {row.name:14s} {layer_names[row.name]:18s} {shape}")

# %% [markdown]
# ## 3. Parameters and FLOPs of each variant
#
# The stem barely changes the number of parameters (a 7x7x3x64 kernel instead of a 3x3x3x64
# one: 7,680 weights out of 11 million), but it changes the **compute** enormously, because a
# convolution's cost is proportional to the area of the map it slides over. FLOPs here count
# 2 per multiply-add of every convolution and dense layer (`models.count_flops`; BatchNorm,
# ReLU, additions and pooling add less than 1%). First at the paper's width, 64:

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'width 64':22s}{'parameters':>12s}{'GFLOPs/image':>14s}")
for depth in (18, 34):
    for stem in models.STEMS:
        encoder = models.resnet(depth, stem, width=64)
        n_params = sum(int(np.prod(w.shape)) for w in encoder.trainable_weights)
        print(f"ResNet-{depth} {stem:10s}{n_params:>12,d}{models.count_flops(encoder) / 1e9:>14.3f}")
del encoder

# %% [markdown]
# The CIFAR stem makes the network about 15 times more expensive per image: the ImageNet stem's
# economy comes from throwing away most of the image. (For reference, torchvision's
# `resnet18`/`resnet34` have exactly these ImageNet-stem counts plus 513,000 for their
# 1000-class classifier, which an encoder does not have.)
#
# A CPU cannot train that in a lesson, so the `teaching` preset shrinks the network three ways:
# the width (parameters and FLOPs scale roughly with `width ** 2`), the depth (ResNet-10, one
# block per stage) and the size of the views pretraining feeds it (FLOPs scale with the number
# of pixels). These are the variants at this preset's width on CIFAR-10's 32x32 images (the
# `teaching` preset pretrains on 16x16 views: a quarter of these FLOPs, section 4):

# %%
variants = {}
for depth in sorted(models.STAGE_BLOCKS):
    for stem in models.STEMS:
        variants[f"ResNet-{depth} {stem}"] = models.resnet(
            depth, stem, preset.width, input_shape=(side, side, 3),
            seed=0)
print(f"width {preset.width}, {side}x{side} images")
for label, encoder in variants.items():
    n_params = sum(int(np.prod(w.shape)) for w in encoder.trainable_weights)
    print(f"  {label:20s} {n_params:>12,d} parameters {models.count_flops(encoder) / 1e6:10.1f} MFLOPs/image")

# %% [markdown]
# ## 4. The projector: wide, then thrown away
#
# The projector is `Dense - BatchNorm - ReLU` blocks followed by a last `Dense`, e.g.
# 8192-8192-8192 in the paper. Its output `z` is what the loss decorrelates: each of the `D`
# features must be invariant to the augmentations (diagonal of `c` near 1) and carry
# information that no other feature carries (off-diagonal near 0). A larger `D` gives the
# network room for more non-redundant features, and the paper found that Barlow Twins keeps
# improving as `D` grows to 8192 and beyond, where methods like SimCLR or BYOL saturate.
#
# Two details follow the official code: dense layers followed by BatchNorm have no bias, and
# neither does the last one, because the loss standardises every feature of `z` over the
# batch, which subtracts a constant bias anyway. The 2021 example used 5000-5000-5000 with
# biases. Counted by hand, the projectors' sizes on the 512 features of a width-64 ResNet-18/34:

# %%
# NBVAL_CHECK_OUTPUT
def projector_params(dims, input_dim):
    """Kernels (no biases) plus BatchNorm's gamma and beta for every layer but the last."""
    sizes = (input_dim,) + tuple(dims)
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) + sum(2 * d for d in dims[:-1])

for label, dims in [("paper / full preset", (8192, 8192, 8192)), ("2021 example", (5000, 5000, 5000)),
                    ("solo-learn CIFAR", (2048, 2048, 2048)),
                    ("teaching preset", get_preset("teaching").proj_dims)]:
    print(f"{label:20s} {'-'.join(map(str, dims)):>15s}: {projector_params(dims, 512):>12,d} "
          "parameters on 512 features")

# %% [markdown]
# The paper's projector (138 million parameters) is **more than six times the size of the
# ResNet-34** it sits on. Yet it is discarded after pretraining. The loss forces `z` to be
# invariant to everything the augmentations change (colour, crop position, ...); the layers
# just before the loss specialise in that, while the encoder's features `h` keep more general
# information. So linear probes and kNN classifiers are trained on `h`, the encoder's output.
# The 2021 example probed `z`, the projector's output, one of the defects this course fixes.
#
# That is why `models.barlow_twins_network` keeps the pieces apart: `.encoder` (images to `h`),
# `.projector` (`h` to `z`) and `.model`, the two composed for training, all sharing weights.
# Here is the network of this preset, with our hand count checked against the package's:

# %%
net = models.build_from_preset(preset, seed=0)
print(f"encoder   {net.encoder.name:22s} -> h: {net.feature_dim} features")
print(f"projector {net.projector.name:22s} -> z: {net.proj_dim} features (D)")
count = lambda model: sum(int(np.prod(w.shape)) for w in model.trainable_weights)
assert count(net.projector) == projector_params(preset.proj_dims, net.feature_dim)
assert net.model.get_layer(net.encoder.name) is net.encoder  # the same weights, not a copy
for label, part in [("encoder", net.encoder), ("projector", net.projector), ("whole", net.model)]:
    print(f"{label:10s} {count(part):>12,d} trainable parameters {models.count_flops(part) / 1e6:9.2f} MFLOPs/image")

# %% [markdown]
# ## 5. A batch, forwarded, every shape printed
#
# A batch of real training images (as floats in `[0, 1]`), through each part of the network.
# We build a model with one output per stage to read the intermediate shapes.

# %%
stored = images.x_train[: preset.batch_size].astype("float32") / 255.0  # (batch, 32, 32, 3)
batch = train.resize_images(stored, preset.image_size)  # the size pretraining feeds the network
stage_ends = ["stem_relu"] + [f"stage{i}_block{n}_out" for i, n in
                              enumerate(models.STAGE_BLOCKS[preset.depth], start=1)] + ["avg_pool"]
probe = keras.Model(net.encoder.input, [net.encoder.get_layer(n).output for n in stage_ends])
print(f"{'images':22s} {batch.shape}")
for name, value in zip(stage_ends, probe(batch, training=False)):
    print(f"{name:22s} {tuple(value.shape)}")
h = net.encoder(batch, training=False)
z = net.projector(h, training=False)
print(f"{'h = encoder(images)':22s} {tuple(h.shape)}")
print(f"{'z = projector(h)':22s} {tuple(z.shape)}")
np.testing.assert_allclose(net(batch).numpy(), z.numpy(), rtol=1e-4, atol=1e-4)

# %% [markdown]
# ## 6. Forward time per batch on this machine
#
# FLOPs predict cost only roughly: small maps and thin layers use a processor less efficiently.
# So we measure: each variant of section 3 forwards a batch of the preset's size, once to warm
# up (tracing the `tf.function`), then timed five times; we keep the median. A training step
# costs more: the backward pass does about twice the forward's work, and every step forwards
# two views of each image. `benchmarks/bench_models.py` measures forward+backward too.

# %%
timings = []
x_batch = tf.constant(stored)  # the 32x32 images of section 5
for label, encoder in variants.items():
    forward = tf.function(lambda t, m=encoder: m(t, training=False))
    forward(x_batch)  # warm-up: traces the graph
    seconds = []
    for _ in range(5):
        start = time.perf_counter()
        forward(x_batch)
        seconds.append(time.perf_counter() - start)
    timings.append(dict(name=label, params=count(encoder), gflops=models.count_flops(encoder) / 1e9,
                        ms_per_batch=1000 * float(np.median(seconds))))
    print(f"{label:20s} {timings[-1]['ms_per_batch']:8.0f} ms per batch of {preset.batch_size}"
          f" = {preset.batch_size / np.median(seconds):8.0f} images/s")

# %%
fig = plots.plot_model_costs(timings, title=f"Encoders at width {preset.width}, batch {preset.batch_size}, "
                                            f"{side}x{side} images")

# %% [markdown]
# ## Summary
#
# - A basic residual block is `relu(F(x) + shortcut(x))`, two bias-free 3x3 convolutions with
#   BatchNorm in `F`, and a 1x1 projection shortcut when the shape changes. We rebuilt it from
#   `tf.nn.conv2d` and the BatchNorm formula and matched `models.basic_block`.
# - The ImageNet stem divides the side by 4 before the first block: on CIFAR-10 the network
#   works at 8x8 from the start and at 1x1 at the end, where 3x3 convolutions mostly see
#   padding. The CIFAR stem keeps 32x32 and costs ~15 times more compute for the same
#   parameters.
# - The projector is wide (8192 in the paper) because the loss decorrelates its `D` outputs and
#   benefits from many of them; it is dropped after pretraining, and evaluation uses the
#   encoder's features `h` (`network.encoder`).
# - On a CPU the width, the depth, the image size and the stem decide whether training fits in
#   a lesson; the timings above are why the `teaching` preset uses a ResNet-10 at width 32 on
#   16x16 views, and the `full` preset a ResNet-34 at width 64 on 32x32 images on a GPU.
#
# ## Exercises
#
# 1. At what input size does the ImageNet stem leave the same 4x4 map in stage 4 as the CIFAR
#    stem does on 32x32 images? Check with `models.feature_map_sizes`, then with
#    `models.resnet(18, "imagenet", input_shape=...)`.
# 2. Count the FLOPs per image of the paper's 8192-8192-8192 projector on a ResNet-34's 512
#    features (`models.count_flops(models.projector((8192,) * 3, input_dim=512))`). Which part
#    of the network dominates the compute, and which the parameters?
# 3. Build a fresh ResNet-34 with `zero_init_residual=True` and with `False`, feed the same
#    random images in inference mode and compare the standard deviation of the features. What
#    does zero-initialising the residual branches do to a deep network at the start?
# 4. Double `width` and predict how parameters and FLOPs change before measuring them. Why is
#    the stem convolution the exception to the rule?
