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
# # 02 · The cross-correlation matrix
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/barlow-twins-course/barlow-twins-course/blob/main/notebooks/02_cross_correlation.ipynb)
#
# Barlow Twins never compares two images directly. It feeds two augmented views of the same
# batch through one network, gets two embedding matrices `z_a` and `z_b` of shape `(N, D)`
# (N images, D features), and looks at a single `D x D` matrix built from them: the
# **cross-correlation matrix** `c`. The loss of notebook 03 asks `c` to be the identity. This
# notebook is about `c` itself: what one entry means, what `c` looks like for good and bad
# embeddings, and what a network that has not been trained yet produces.
#
# **What you will learn**
# - what `c_ij` measures, by computing `c` by hand on a batch of six images and checking it
#   against `bt_helpers.loss.cross_correlation`;
# - how to read a heatmap of `c`: identical views, unrelated views, noisy views, redundant
#   features;
# - why the off-diagonal entries are never exactly zero on a finite batch (sampling noise of
#   size `1/sqrt(N)`), and why `c` cannot be the identity when `D > N`;
# - what `c` looks like for a randomly initialised ResNet on two augmented views of real images;
# - how batch size, width, noise and redundancy move `c`, with an interactive explorer.
#
# **Runtime**: under half a minute with the `teaching` preset on 2 CPU cores (11 s measured;
# a few seconds with `ci`). No GPU needed.
#
# **Prerequisites**: notebook 01 (the two augmented views); correlation and standard deviation;
# a matrix product.

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
import numpy as np

import bt_helpers
from bt_helpers import augment, loss, models, plots, train, widgets

preset, images = bt_helpers.start()

# %% [markdown]
# ## 1. One entry of `c`, by hand
#
# Take the embeddings of the two views, `z_a` and `z_b`, both `(N, D)`. First **standardise
# every feature over the batch**: subtract the feature's mean over the N images and divide by
# its standard deviation (the *biased* one, dividing by N, as in the paper). Then
#
# $$c_{ij} = \frac{1}{N} \sum_{n=1}^{N} \hat z^{a}_{n,i}\, \hat z^{b}_{n,j}.$$
#
# That is the Pearson correlation, across the images of the batch, between feature `i` of
# view A and feature `j` of view B. It lies in `[-1, 1]`:
#
# - on the **diagonal**, `c_ii` compares a feature with *itself* across the two views: 1 means
#   the feature does not care which augmentation the image got (up to a positive scale and a
#   shift), which is what we want;
# - **off the diagonal**, `c_ij` compares two *different* features: anything but 0 means
#   feature `j` can be (linearly) predicted from feature `i`, so one of them is partly
#   redundant.
#
# A batch of six images with three features makes each case visible: feature 0 of view B is
# feature 0 of view A times 3 plus 1, feature 1 is a noisy copy, and feature 2 has its sign
# flipped.

# %%
# NBVAL_CHECK_OUTPUT
z_a = np.array([[0.5, 1.0, -0.3], [1.2, -0.4, 0.8], [-0.7, 0.3, 1.5],
                [0.1, -1.1, -0.9], [-1.5, 0.6, 0.2], [0.9, 0.2, -1.0]], dtype="float32")
noise = np.array([0.4, -0.3, 0.2, 0.5, -0.6, 0.1], dtype="float32")
z_b = np.stack([3 * z_a[:, 0] + 1, z_a[:, 1] + noise, -z_a[:, 2]], axis=1)   # (6, 3)


def standardise(z):
    """Each column to mean 0 and (biased) standard deviation 1."""
    return (z - z.mean(axis=0)) / z.std(axis=0)   # np.std divides by N


n = len(z_a)
c_by_hand = standardise(z_a).T @ standardise(z_b) / n   # (3, 6) @ (6, 3) -> (3, 3)
print("c by hand:\n", np.round(c_by_hand, 3))

# %% [markdown]
# Read the diagonal: `c_00 = 1` (a scale and a shift do not matter), `c_11` is high but below 1
# (the noise), `c_22 = -1` (a sign flip is the worst possible match). The off-diagonal entries
# are the correlations between different features of the two views.
#
# Now the package's version. It adds a tiny `eps = 1e-5` to each variance before dividing (as
# a BatchNorm layer does; notebook 03 shows why that matters), so it agrees to about `1e-5`.
# And `c` really is a block of the ordinary correlation matrix: NumPy's `corrcoef` of the six
# features gives the same numbers.

# %%
# NBVAL_CHECK_OUTPUT
c = loss.cross_correlation(z_a, z_b).numpy()
np.testing.assert_allclose(c, c_by_hand, atol=1e-4)
np.testing.assert_allclose(c, np.corrcoef(z_a.T, z_b.T)[:3, 3:], atol=1e-4)
print("bt_helpers.loss.cross_correlation agrees with the hand computation and with np.corrcoef")
print("diagonal:", np.round(np.diag(c), 3))

# %% [markdown]
# ## 2. Reading a heatmap of `c`
#
# With realistic widths `c` is too big to print, so we draw it: red is +1, white 0, blue -1.
# `bt_helpers.loss.toy_views` makes two views with known statistics: every feature has unit
# variance, any two features have correlation `redundancy`, and each view adds its own noise
# of standard deviation `noise`. Then, on average, `c_ii = 1 / (1 + noise^2)` and
# `c_ij = redundancy / (1 + noise^2)`. Five situations, with `N = 256` images and `D = 32`
# features (small enough to see every entry):
#
# 1. **identical views**: the same embedding twice, with independent features;
# 2. **unrelated views**: view B has nothing to do with view A;
# 3. **noisy views**: the same features plus noise in each view;
# 4. **correlated features**: every pair of features has correlation 0.5;
# 5. **duplicated features**: only 16 distinct features, each stored twice.

# %%
N_TOY, D_TOY = 256, 32
z, _ = loss.toy_views(N_TOY, D_TOY, noise=0.0, seed=1)
other, _ = loss.toy_views(N_TOY, D_TOY, noise=0.0, seed=2)
half_a, half_b = loss.toy_views(N_TOY, D_TOY // 2, noise=0.3, seed=3)
cases = {
    "identical views": (z, z),
    "unrelated views": (z, other),
    "noisy views (noise 0.7)": loss.toy_views(N_TOY, D_TOY, noise=0.7, seed=4),
    "correlated features (0.5)": loss.toy_views(N_TOY, D_TOY, noise=0.3, redundancy=0.5, seed=5),
    "duplicated features": (np.repeat(half_a, 2, axis=1), np.repeat(half_b, 2, axis=1)),
}
toy_c = {name: loss.cross_correlation(a, b).numpy() for name, (a, b) in cases.items()}
fig = plots.plot_cross_correlations(toy_c, ncols=5)

# %% [markdown]
# The same five matrices in numbers: the mean diagonal entry, the root-mean-square
# off-diagonal entry, and the two sums the loss of notebook 03 is made of.

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'':27s} {'mean c_ii':>9s} {'rms c_ij':>9s} {'sum (1-c_ii)^2':>15s} {'sum c_ij^2':>11s}")
for name, c in toy_c.items():
    s = plots.correlation_stats(c)
    print(f"{name:27s} {s['mean_diagonal']:9.2f} {s['rms_off_diagonal']:9.2f} "
          f"{s['invariance']:15.1f} {s['off_diagonal_sq_sum']:11.1f}")

# %% [markdown]
# - **Identical views** give a diagonal of exactly 1, but the off-diagonal is not white: it is
#   speckled with small values, although the features were drawn independently (section 3).
# - **Unrelated views**: nothing on the diagonal. A network whose two views are unrelated has
#   learned nothing about what the views share.
# - **Noisy views**: the diagonal drops to about `1 / (1 + 0.7^2) = 0.67`; augmentations play
#   the role of this noise, and training makes the features ignore them.
# - **Correlated features**: the whole matrix is pink, `c_ij` close to
#   `0.5 / (1 + 0.3^2) = 0.46`. Each feature tells you a lot about the others: a waste of
#   dimensions.
# - **Duplicated features**: 2x2 red blocks. The diagonal is fine, so the first term of the
#   loss is happy; only the off-diagonal entries reveal that half the features are copies.
#   This is why the loss needs a second term.

# %% [markdown]
# ## 3. Why the off-diagonal is never exactly zero
#
# Even for features that are truly independent, a correlation *measured on N samples* is
# not exactly 0: it fluctuates around 0 with a standard deviation of about `1 / sqrt(N)`. So
# the off-diagonal entries of `c` have a noise floor set by the batch size, and the sum of
# their squares is about `D (D - 1) / N`, even for perfect features. Let us check that on
# identical views of independent features, for four batch sizes.

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'N':>5s} {'rms c_ij':>9s} {'1/sqrt(N)':>10s} {'sum c_ij^2':>11s} {'D(D-1)/N':>9s}")
for n in [16, 64, 256, 1024]:
    z, _ = loss.toy_views(n, D_TOY, noise=0.0, seed=n)
    s = plots.correlation_stats(loss.cross_correlation(z, z).numpy())
    print(f"{n:5d} {s['rms_off_diagonal']:9.3f} {n ** -0.5:10.3f} "
          f"{s['off_diagonal_sq_sum']:11.1f} {D_TOY * (D_TOY - 1) / n:9.1f}")

# %% [markdown]
# A second consequence of a finite batch: `c = z_a_norm^T z_b_norm / N` is a product through
# an N-dimensional space, and the standardised columns all sum to zero, so the **rank of `c`
# is at most `N - 1`**. When the projector is wider than the batch (the paper: `D = 8192`,
# `N = 2048`; the `full` preset: 8192 and 512), `c` *cannot* be the identity, whatever the
# network does; the loss can only push it as close as the batch allows.

# %%
# NBVAL_CHECK_OUTPUT
z, _ = loss.toy_views(64, 128, noise=0.0, seed=0)   # N = 64 images, D = 128 features
c_wide = loss.cross_correlation(z, z).numpy()
print("N = 64, D = 128: rank of c =", np.linalg.matrix_rank(c_wide, tol=1e-4),
      "| diagonal still 1:", bool(np.allclose(np.diag(c_wide), 1, atol=1e-4)))

# %% [markdown]
# ## 4. A network that has not been trained yet, on real images
#
# Now the real thing: the preset's encoder and projector (`bt_helpers.models`) with random
# weights, two augmented views of one batch of training images (`bt_helpers.augment`, the
# preset's recipe), and `c` of the resulting embeddings. The network runs in training mode,
# as during pretraining, so its BatchNorm layers use the batch statistics. The views are made
# from the 32x32 images and then resized to the preset's `image_size`, as pretraining does.

# %%
net = models.build_from_preset(preset, seed=0)
batch = images.x_train[:preset.batch_size]
view_a, view_b = (train.resize_images(v, preset.image_size)
                  for v in augment.two_views(batch, recipe=preset.recipe, seed=0))
z_a, z_b = net(view_a, training=True), net(view_b, training=True)
kind = "synthetic" if images.source == "synthetic" else "real"
print(f"{kind} images: {batch.shape[0]} pairs -> z_a, z_b of shape {tuple(z_a.shape)}")
terms = loss.barlow_twins_terms(z_a, z_b, preset.lambda_offdiag)
fig = plots.plot_correlation_summary(terms.c.numpy(), preset.lambda_offdiag,
                                     title=f"random-init ResNet-{preset.depth} + projector, "
                                           f"two augmented views of {kind} images")

# %% [markdown]
# What to look for (the numbers for this run are printed below; the heatmap shows the first 128
# features when `D` is larger, the histograms use all of `c`):
#
# - the **diagonal** is clearly positive but far from 1 (about 0.2 for CIFAR-10 with the
#   `teaching` preset): a random network already maps the two views of an image to slightly
#   similar embeddings, because random convolutions respond to colours and coarse shapes that
#   survive some of the augmentations, but crops, colour jitter and grayscale change most of
#   what it computes;
# - the **off-diagonal** entries spread wider than the `1/sqrt(N)` noise floor of section 3:
#   random features share information, since they are all driven by the same few dominant
#   properties of the input (overall brightness, colour).
#
# Pretraining has to fix both: raise the diagonal to 1 (invariance to augmentations) and push
# the off-diagonal down to the noise floor (decorrelated, non-redundant features). For
# comparison, the same batch without augmentations gives a diagonal of exactly 1: the
# invariance term only has work to do because the two views differ.

# %%
s = plots.correlation_stats(terms.c.numpy(), preset.lambda_offdiag)
plain = train.resize_images(batch / 255, preset.image_size)
same = loss.cross_correlation(net(plain, training=True), net(plain, training=True))
print(f"augmented views:  mean c_ii = {s['mean_diagonal']:.3f}, rms c_ij = "
      f"{s['rms_off_diagonal']:.3f} (noise floor 1/sqrt(N) = {preset.batch_size ** -0.5:.3f})")
print(f"identical inputs: mean c_ii = {np.diag(same.numpy()).mean():.3f}")
print(f"loss terms: invariance = {float(terms.invariance):.1f} (D = {preset.proj_dim} for a zero "
      f"diagonal), "
      f"redundancy = {float(terms.redundancy):.1f} (lambda = {preset.lambda_offdiag})")

# %% [markdown]
# ## 5. The correlation explorer
#
# Move the sliders and watch `c`, the histograms of its diagonal and off-diagonal entries, and
# the two loss terms. Things to try:
#
# - raise the **noise**: the red diagonal histogram slides left, to `1 / (1 + noise^2)`;
# - raise the **redundancy**: the blue off-diagonal histogram leaves 0;
# - shrink the **batch size** with noise and redundancy at 0: the off-diagonal histogram
#   widens (`1/sqrt(N)`), and the redundancy term grows although nothing is redundant;
# - make the **embedding dimension** larger than the batch size.
#
# The drop-down also offers the random network's embeddings from section 4 (the sliders for
# `N` and `D` then take the first rows and columns). In a static copy of this notebook the
# widget does not move; the figure above section 5 is its static counterpart.

# %%
widgets.correlation_explorer(batch_size=128, proj_dim=32, noise=0.5, redundancy=0.2,
                             lambda_offdiag=preset.lambda_offdiag,
                             views={"random network, augmented views": (z_a, z_b)})

# %% [markdown]
# ## Summary
#
# - `c_ij` is the correlation, across the images of a batch, between feature `i` of one view
#   and feature `j` of the other; the features are standardised over the batch first.
# - The diagonal measures **invariance** (1 = the feature ignores the augmentation); the
#   off-diagonal measures **redundancy** (0 = the features carry different information).
# - On a finite batch, off-diagonal entries have a noise floor of about `1/sqrt(N)`, and `c`
#   has rank at most `N - 1`: with `D > N` it cannot be the identity.
# - A randomly initialised network gives a partly invariant but highly redundant `c`;
#   notebook 03 turns "make `c` the identity" into a loss, and notebook 05 trains on it.
#
# ## Exercises
#
# 1. Show with NumPy that `c` does not change when you multiply a column of `z_a` by 5 and add
#    3, but that its sign flips when you multiply by -5. What does that mean for the network?
# 2. In section 3, the noise floor of the *sum* of squared off-diagonal entries is about
#    `D (D - 1) / N`. For the paper's `D = 8192` and `N = 2048`, how big is it, compared with
#    the largest possible invariance term (`D`)?
# 3. In section 4, replace `preset.recipe` with `"original_2021"` (the 2021 example's
#    augmentations). Does the random network's diagonal go up or down? Why?
# 4. Build `z_b` from `z_a` by a random rotation (`z_a @ Q` with `Q` orthogonal). Which
#    entries of `c` show that the information is still all there, and which term of the loss
#    would penalise this pair of views?
