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
# # 01 · Augmentations: the teacher of Barlow Twins
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/barlow-twins-course/barlow-twins-course/blob/main/notebooks/01_augmentations.ipynb)
#
# Barlow Twins has no labels. It shows a network two randomly augmented **views** of each
# image and asks for embeddings that agree across the two views while their features stay
# decorrelated. Whatever the augmentations change, the network must learn to ignore; whatever
# they leave alone, it may use. The augmentations are therefore the only teacher: they define
# what "the same image" means.
#
# **What you will learn**
# - why the views must differ in colour and not only in framing: a one-line "network" that
#   matches views by their colour histogram, and how colour jitter defeats it;
# - what each augmentation does, on the same real images, at several strengths: random resized
#   crop, flip, colour jitter, grayscale, Gaussian blur, solarize;
# - how the two **asymmetric** views of a batch are made (`bt_helpers.augment.TwoViews`), and
#   how the recipes (`official`, `cifar`, `original_2021`) live in one table;
# - the defects of the 2021 Keras example (solarize that never fires, a 25% flip, one random
#   decision per batch, a blur sigma frozen at trace time), each measured next to the fix;
# - an explorer: pick images, move probability and strength sliders, watch the pairs change.
#
# **Runtime**: under half a minute with the `teaching` preset on 2 CPU cores (15 s measured),
# about as long with `ci`. No GPU needed.
#
# **Prerequisites**: Python and NumPy; what a Keras layer is. Nothing about Barlow Twins yet.

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

import numpy as np
import tensorflow as tf

import bt_helpers
from bt_helpers import augment, plots, widgets

preset, images = bt_helpers.start()
shown = images.x_val[:6]  # the same six images all along
shown_names = [images.class_names[y] for y in images.y_val[:6]]

# %% [markdown]
# ## 1. Why augmentation is the teacher
#
# Suppose the two views were just two random crops of the same photo. The task "make the
# embeddings of the two views agree, and different images different" can then be solved
# without looking at shapes at all: two crops of a red car share the car's red, and two crops
# of a frog share its greens. A "network" that outputs the **colour histogram** of its input
# already matches views to their partners far more often than chance, and Barlow Twins would
# happily learn that shortcut. Colour jitter and grayscale exist to take it away, so that only
# what survives them (shapes, parts, textures) can make the views agree.
#
# Let us measure the shortcut. For a batch of images we make two views, summarise each view by
# a coarse colour histogram (4 levels per channel: 64 bins, the fraction of pixels in each),
# and for every view A ask whether the nearest view B, by histogram, is its own partner.

# %%
def colour_histograms(views, levels=4):
    """(N, levels**3): the fraction of each view's pixels in each coarse colour bin."""
    q = np.minimum((np.asarray(views) * levels).astype(int), levels - 1)  # (N, H, W, 3)
    bins = (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]  # (N, H, W)
    counts = np.stack([np.bincount(b.ravel(), minlength=levels ** 3) for b in bins])
    return counts / counts.sum(axis=1, keepdims=True)


def shortcut_accuracy(view_a, view_b):
    """How often the view B with the closest colour histogram to a view A is its partner."""
    h_a, h_b = np.sqrt(colour_histograms(view_a)), np.sqrt(colour_histograms(view_b))
    distances = ((h_a[:, None, :] - h_b[None, :, :]) ** 2).sum(-1)  # (N, N)
    return float(np.mean(distances.argmin(axis=1) == np.arange(len(h_a))))


crop_only = {"per_batch": False,  # a custom recipe: the cifar crops and flips, no colour changes
             "steps": {step: augment.RECIPES["cifar"]["steps"][step] for step in ("crop", "flip")}}
batch = images.x_val[:512]
for name, recipe in [("crops and flips only", crop_only), ("cifar recipe", "cifar")]:
    view_a, view_b = augment.two_views(batch, recipe=recipe, seed=0)
    print(f"{name:22s}: partner found by colour histogram for "
          f"{shortcut_accuracy(view_a, view_b):.0%} of {len(batch)} images "
          f"(chance: {1 / len(batch):.1%})")

# %% [markdown]
# With crops alone, 64 colour numbers per view find the partner for a large share of the batch.
# With the colour augmentations of the real recipe the same shortcut works several times less
# often: to match its views reliably, the network has to look at content. (SimCLR's ablations,
# Chen et al. 2020, found the same: crop plus colour distortion is the composition that
# matters most.)
#
# ## 2. The input contract
#
# Every entry point (`two_views`, the `TwoViews` layer) takes `uint8` images with values 0-255
# or float images with values in [0, 1], one image `(32, 32, 3)` or a batch
# `(N, 32, 32, 3)`, and returns `float32` views in [0, 1]. Mistakes are errors that say what
# was received and how to fix it; the most common one is float images that were never
# divided by 255 (exactly the mismatch behind one of the 2021 defects, section 5).

# %%
# NBVAL_CHECK_OUTPUT
wrong_inputs = {
    "floats 0-255": np.full((2, 32, 32, 3), 254.0, np.float32),
    "grayscale": np.zeros((2, 32, 32, 1), np.uint8),
    "RGBA": np.zeros((2, 32, 32, 4), np.uint8),
    "no channel axis": np.zeros((32, 32), np.uint8),
    "NaN": np.full((2, 32, 32, 3), np.nan, np.float32),
}
for name, bad in wrong_inputs.items():
    try:
        augment.two_views(bad, recipe="cifar", seed=0)
    except ValueError as error:
        print(f"{name}: {error}\n")

# %% [markdown]
# ## 3. Each augmentation, on the same images
#
# All six augmentations are Keras preprocessing layers written the way Keras writes its own:
# `get_random_transformation` draws random parameters **for every image separately**, and
# `transform_images` applies them. Splitting the two lets us pick the parameters ourselves and
# look at one augmentation at a time.
#
# ### Random resized crop
#
# The most important augmentation: cut out a box covering between 8% and 100% of the image,
# with an aspect ratio between 3:4 and 4:3, and resize it back to 32x32. Two crops of one image
# may show different parts of the object, at different scales: the network must recognise the
# object from either. The box is sampled as in torchvision: draw an area fraction `s` uniformly
# in the scale range and an aspect ratio `r` log-uniformly; a box of that area and ratio has
# height `sqrt(s / r)` and width `sqrt(s * r)` (as fractions of a square image); if it does not
# fit, try again (up to 10 times). Here is that rule by hand for one image, checked against the
# layer fed the same random numbers.

# %%
crop = augment.RandomResizedCrop(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
u = np.random.default_rng(3).random((1, crop.num_uniforms)).astype(np.float32)
attempts = u[0, 1:].reshape(10, 4)  # column 0 is the apply decision (always applied)
for area_u, ratio_u, top_u, left_u in attempts:
    area = 0.08 + (1.0 - 0.08) * area_u
    ratio = np.exp(np.log(3 / 4) + (np.log(4 / 3) - np.log(3 / 4)) * ratio_u)
    height, width = np.sqrt(area / ratio), np.sqrt(area * ratio)
    if height <= 1 and width <= 1:  # the first box that fits wins
        top, left = top_u * (1 - height), left_u * (1 - width)
        break
by_hand = np.array([top, left, top + height, left + width])
by_layer = crop.transformation_from_uniforms(tf.constant(u), shown[:1])["boxes"][0].numpy()
np.testing.assert_allclose(by_layer, by_hand, atol=1e-5)
print(f"box [y1, x1, y2, x2] = {np.round(by_layer, 3)}, area {area:.3f}, ratio {ratio:.3f}")

# %% [markdown]
# "Uniform area in [0.08, 1]" is what is asked; what comes out is not quite that, because a
# large box with an extreme ratio does not fit and is redrawn. The realised areas are uniform
# up to 0.75 and thin out above (mean about 0.5). The 2021 example cropped squares of 56-94%
# of the image instead: far easier views.

# %%
boxes = crop.get_random_transformation(np.zeros((5000, 32, 32, 3), np.float32), seed=0)["boxes"]
areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
old_crop = augment.TwoViews("original_2021").layers_a["crop"]
# The 2021 pipeline called its crop once per image: the same crop, drawn per image.
per_image = augment.RandomResizedCrop(scale=old_crop.scale, ratio=old_crop.ratio)
old_boxes = per_image.get_random_transformation(np.zeros((5000, 32, 32, 3), np.float32),
                                                seed=1)["boxes"]
old_areas = (old_boxes[:, 2] - old_boxes[:, 0]) * (old_boxes[:, 3] - old_boxes[:, 1])
fig = plots.plot_crop_areas(areas, scale=crop.scale, reference=("2021 example", old_areas))

# %% [markdown]
# ### All six, at several strengths
#
# Each row below applies one augmentation with fixed parameters to the same six images. The
# colour jitter is really four adjustments, each drawn per image in the recipe: brightness
# multiplies all channels, contrast pulls every pixel towards the image's mean gray, saturation
# pulls every pixel towards its own gray, and hue turns the colour wheel. Blur is a Gaussian of
# standard deviation `sigma` pixels; solarize inverts every pixel value above 0.5.

# %%
x = augment.to_unit_float(shown)
n = len(shown)
yes = tf.ones(n, tf.bool)


def jitter(brightness=1.0, contrast=1.0, saturation=1.0, hue=0.0):
    factors = {k: tf.fill([n], float(v)) for k, v in dict(
        brightness=brightness, contrast=contrast, saturation=saturation, hue=hue).items()}
    return augment.RandomColorJitter.jitter(x, {"apply": yes, **factors})


def crop_to(area):
    side = np.sqrt(area)  # a centred square of that area
    return augment.RandomResizedCrop.crop(x, tf.constant([[0.5 - side / 2, 0.5 - side / 2,
                                                           0.5 + side / 2, 0.5 + side / 2]] * n))


def blur(sigma):
    return augment.RandomGaussianBlur.blur(x, {"apply": yes, "sigma": tf.fill([n], sigma)}, 6, 1.0)


grid = {"original": x, "crop area 0.5": crop_to(0.5), "crop area 0.1": crop_to(0.1),
        "flip": x[:, :, ::-1], "brightness x0.6": jitter(brightness=0.6),
        "brightness x1.4": jitter(brightness=1.4), "contrast x0.6": jitter(contrast=0.6),
        "saturation x1.2": jitter(saturation=1.2),
        "hue +0.1 turn": jitter(hue=0.1), "hue -0.1 turn": jitter(hue=-0.1),
        "grayscale": augment.RandomGrayscale.grayscale(x, yes, 1.0),
        "blur sigma 1": blur(1.0), "blur sigma 2": blur(2.0),
        "solarize": augment.RandomSolarize.solarize(x, yes, 0.5, p=1.0)}
fig = plots.plot_image_grid({k: np.asarray(v) for k, v in grid.items()}, col_labels=shown_names,
                            cell=1.0)

# %% [markdown]
# Two observations. First, on 32x32 images a blur of sigma 2 leaves almost nothing but a few
# colour blobs, which is why the CIFAR recipe (solo-learn's) drops blur; the official recipe
# was written for 224x224 ImageNet crops, where sigma 2 removes only fine texture. Second,
# solarize is subtle on dark images and wild on bright ones: it inverts only pixel values at
# or above the threshold. A check by hand on a tiny toy image:

# %%
# NBVAL_CHECK_OUTPUT
toy = np.array([[[0.1, 0.5, 0.9], [0.49, 0.51, 1.0]]], np.float32)  # (1, 2, 3): two pixels
by_hand = np.where(toy >= 0.5, 1.0 - toy, toy)
by_layer = augment.RandomSolarize(p=1.0, threshold=0.5)(toy[None])[0].numpy()
np.testing.assert_allclose(by_layer, by_hand, atol=1e-6)
print("before:", toy.astype(float).round(2).tolist())
print("after: ", by_layer.astype(float).round(2).tolist())

# %% [markdown]
# ## 4. Two asymmetric views of a batch
#
# A **recipe** lists, per view, which augmentations run with which probability and strength.
# The recipes are data, one table (`augment.RECIPES`), not code. An entry that is a pair gives
# view a and view b different settings: the official recipe blurs view a always and view b
# 10% of the time, and solarizes only view b. The asymmetry makes the two views differ in
# more ways than random chance alone would.

# %%
for name in ("official", "cifar"):
    print(f"{name}: {augment.RECIPES[name]['about']}")
    for step in augment.STEPS:
        per_view = [augment.recipe_steps(name, v).get(step) for v in (0, 1)]
        text = [", ".join(f"{k}={v}" for k, v in params.items() if k != "per_batch")
                if params else "-" for params in per_view]
        both = text[0] == text[1]
        print(f"  {step:9s}  " + (f"both views: {text[0]}" if both
                                  else f"a: {text[0]}  |  b: {text[1]}"))
    print()

# %% [markdown]
# `augment.two_views(images, recipe, seed)` makes both views in one call, from `uint8` or float
# images; the same seed always gives the same views. In training, the `TwoViews` layer does the
# same inside `tf.data` or the compiled training step (notebook 05).

# %%
view_a, view_b = augment.two_views(images.x_val[:8], recipe=preset.recipe, seed=1)
fig = plots.plot_view_pairs(images.x_val[:8], view_a, view_b, col_labels=[
    images.class_names[y] for y in images.y_val[:8]], title=f"recipe '{preset.recipe}'")

# %% [markdown]
# Every decision is made **per image**: in a batch, about 80% of the images are jittered, not
# all-or-none. We can count the decisions the layer draws for 4,096 images (the draws depend
# only on the seed and the batch size, not on the pixels).

# %%
# NBVAL_CHECK_OUTPUT
layer = augment.TwoViews("official", seed=0)
draws = layer.get_random_transformation(np.zeros((4096, 8, 8, 3), np.uint8))
print("fraction of 4,096 images augmented   view a   view b")
for step in ("flip", "jitter", "grayscale", "blur", "solarize"):
    rates = [f"{float(np.mean(view[step]['apply'])):6.1%}" if step in view else "     -"
             for view in draws]
    print(f"  {step:35s}  {rates[0]}   {rates[1]}")

# %% [markdown]
# ## 5. What was wrong with the 2021 example
#
# The 2021 Keras example of Barlow Twins had the right list of augmentations and the wrong
# behaviour, in ways no error message reveals. The recipe `original_2021` reproduces it on
# purpose, so we can measure it:
#
# 1. **Solarize never fires.** Its rule `tf.where(x < 10, x, 255 - x)` was written for 0-255
#    pixels, but the images had been divided by 255: no value is ever 10 or more. (Keras'
#    own `Solarization` layer has the same trap: its `value_range` defaults to (0, 255).)
# 2. **Flip at 25%, not 50%.** `tf.image.random_flip_left_right` (a 50% coin) sat inside
#    `if random() < 0.5`: two coins, a quarter of the images.
# 3. **One random decision per call.** Each layer drew one scalar, `tf.random.uniform([]) < p`.
#    The example mapped the augmenter over single images, so that was one decision per image,
#    but it forced the slow one-image-at-a-time pipeline; applied to a batch (as fast
#    pipelines and on-device augmentation do), each decision covers the whole batch.
# 4. **Blur sigma frozen at trace time.** `np.random.random()` inside a `tf.function` runs
#    once, when the function is traced; every blurred image then used that one sigma.

# %%
def rate(layer, x, detect):
    """Fraction of images where ``detect(before, after)`` holds."""
    return float(np.mean(detect(x, layer(x).numpy())))


def changed(before, after):
    return np.abs(after - before).reshape(len(before), -1).max(axis=1) > 1e-6


def flipped(before, after):
    return np.abs(after - before[:, :, ::-1]).reshape(len(before), -1).max(axis=1) < 1e-6


noise = np.random.default_rng(0).random((2000, 8, 8, 3)).astype(np.float32)
old, new = augment.TwoViews("original_2021", seed=0), augment.TwoViews("cifar", seed=0)
rates = {
    "solarize": {"intended": 0.2, "2021 example": rate(old.layers_b["solarize"], noise, changed),
                 "this course": rate(new.layers_b["solarize"], noise, changed)},
    # The 2021 pipeline called its augmenter once per image: its flip, decided per image.
    "flip": {"intended": 0.5, "2021 example": rate(augment.RandomHorizontalFlip(
        p=0.5, nested_p=0.5, seed=0), noise, flipped), "this course": rate(new.layers_a["flip"],
                                                                          noise, flipped)},
}
print({k: {s: round(v, 3) for s, v in r.items()} for k, r in rates.items()})
fig = plots.plot_apply_rates(rates, title="Measured on 2,000 images: 2021 example vs this course")

# %% [markdown]
# Now the per-batch decisions, on batches of 64 images: the fraction of each batch turned gray,
# for 30 batches. Per-image decisions give about 20% in every batch; a per-batch decision gives
# all or nothing, so a network sees whole batches where every pair shares the same colour
# treatment.

# %%
batches = np.array_split(noise[:1920], 30)
def gray(before, after):
    return np.abs(after[..., 0] - after[..., 1]).reshape(len(after), -1).max(axis=1) < 1e-6


series = {"2021 example (one decision per batch)":
          [gray(b, old.layers_a["grayscale"](b).numpy()).mean() for b in batches],
          "this course (per image)": [gray(b, new.layers_a["grayscale"](b).numpy()).mean()
                                      for b in batches]}
fig = plots.plot_batch_rates(series, p=0.2, title="Grayscale, batch by batch (64 images each)")

# %% [markdown]
# And the blur: three calls of each layer, the sigma of the first five images of each call.

# %%
# NBVAL_CHECK_OUTPUT
old_blur = old.layers_a["blur"]
new_blur = augment.TwoViews("official", seed=0).layers_a["blur"]
for name, blur_layer in [("2021 example", old_blur), ("this course", new_blur)]:
    sigmas = [blur_layer.get_random_transformation(noise[:5], seed=call)["sigma"].numpy()
              for call in range(3)]
    print(f"{name:13s}: " + " | ".join(" ".join(f"{s:.2f}" for s in call) for call in sigmas))

# %% [markdown]
# Put together, here is what a batch of the 2021 recipe looks like next to the course's. In the
# 2021 batch every image got the same decisions (look at which rows are gray or jittered); in
# the course's, each image got its own.

# %%
batch8 = images.x_val[8:16]
rows = {"original": batch8}
for recipe in ("original_2021", "cifar"):
    view_a, view_b = augment.two_views(batch8, recipe=recipe, seed=4)
    rows[f"{recipe}: view a"], rows[f"{recipe}: view b"] = np.asarray(view_a), np.asarray(view_b)
fig = plots.plot_image_grid(rows, title="One batch, two recipes")

# %% [markdown]
# ## 6. Fast enough to never be the bottleneck
#
# Because every parameter is drawn per image as a tensor, a whole batch is augmented with a
# handful of batched operations and no Python loop: one `crop_and_resize` per view for all its
# crops (the flip folded into the crop box), one 3x3 colour matrix per image for the whole
# colour jitter, and only the selected images gathered for the rare augmentations. `benchmarks/bench_augment.py`
# compares this with the 2021 one-image-at-a-time pipeline (the README quotes the figures).
# A quick measurement on this machine, for the preset's batch size:

# %%
layer = augment.make_two_views(preset.recipe, seed=0)
batch = tf.constant(images.x_train[:preset.batch_size])
step = tf.function(layer)
step(batch)  # trace once
start = time.perf_counter()
for _ in range(10):
    view_a, view_b = step(batch)
seconds = (time.perf_counter() - start) / 10
print(f"{preset.batch_size} pairs in {1e3 * seconds:.1f} ms: "
      f"{preset.batch_size / seconds:,.0f} pairs/s")

# %% [markdown]
# ## 7. The explorer
#
# Pick images with the first slider, then move any probability or strength: the figure shows
# the originals with their two views. Each augmentation draws its own random numbers, so moving
# one slider changes that augmentation only. Things to try: set the crop min area to 0.02 and
# to 0.8; push the jitter strength to 2 (the 2021 example doubled it); set a blur probability
# to 1 with sigma 2 and see what is left of a 32x32 image.

# %%
widgets.augmentation_explorer(images.x_val, recipe=preset.recipe, n_images=6,
                              class_names=images.class_names, labels=images.y_val)

# %% [markdown]
# ## Summary
#
# - The augmentations decide what Barlow Twins learns: whatever differs between the two views
#   must be ignored. Crops alone leave a colour shortcut; colour jitter and grayscale shrink it.
# - Six layers, all drawing their parameters per image (`get_random_transformation`) and
#   applying them deterministically (`transform_images`), with `value_range=(0, 1)`; identity
#   with `training=False`.
# - Two views come from one recipe table; the official and CIFAR recipes make the views
#   asymmetric (blur and solarize differ per view).
# - The 2021 example's solarize never fired, its flip ran at 25%, its decisions covered a
#   whole call and its blur sigma was frozen: each measured above, next to the fix.
# - Inputs are `uint8` 0-255 or float 0-1; anything else is a clear error.
#
# ## Exercises
#
# 1. Measure the colour shortcut (section 1) for the `cifar` recipe with the jitter but without
#    grayscale, and with grayscale but without the jitter (build the recipes as dicts like
#    `crop_only`). Which one removes more of the shortcut?
# 2. The realised crop areas have a mean near 0.5 (section 3). Compute, with NumPy and the
#    by-hand rule, the mean area for `scale=(0.2, 1.0)`, then check it against
#    `augment.RandomResizedCrop(scale=(0.2, 1.0))`.
# 3. Write the 2021 flip as layers: a `RandomHorizontalFlip(p=0.5, nested_p=0.5)`. Measure its
#    rate on single images and on batches of 100. Why does the overall rate agree but the
#    per-batch rates not?
# 4. Run `augment.TwoViews("cifar", seed=0)` inside `tf.function(jit_compile=True)` with a fixed
#    `seed=` argument and check with `np.testing.assert_allclose` that it matches the eager call.
