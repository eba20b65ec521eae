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
# # 03 · The Barlow Twins loss
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/barlow-twins-course/barlow-twins-course/blob/main/notebooks/03_loss.ipynb)
#
# Notebook 02 built the cross-correlation matrix `c` of two views' embeddings. The Barlow Twins
# loss (Zbontar et al., 2021, [arXiv:2103.03230](https://arxiv.org/abs/2103.03230)) asks `c`
# to be the identity matrix:
#
# $$\mathcal{L} = \underbrace{\sum_i (1 - c_{ii})^2}_{\text{invariance}}
#   \;+\; \lambda \underbrace{\sum_i \sum_{j \ne i} c_{ij}^2}_{\text{redundancy reduction}},
#   \qquad \lambda = 0.0051 \text{ in the paper.}$$
#
# **What you will learn**
# - what each term rewards, and which kinds of *collapse* each one rules out;
# - why `lambda` is of the order of `1/D`, with a slider that shows the balance of the `D`
#   diagonal against the `D (D - 1)` off-diagonal entries;
# - how gradient descent on this loss moves `c` towards the identity (a toy linear encoder),
#   and what too small or too large a `lambda` converges to;
# - why the 2021 Keras example's loss returns NaN as soon as one feature is constant, and the
#   fix;
# - how the package's loss compares with the 2021 example's loss class on the same inputs.
#
# **Runtime**: under half a minute with the `teaching` preset on 2 CPU cores (15 s measured;
# about as long with `ci`). No GPU needed.
#
# **Prerequisites**: notebook 02 (the cross-correlation matrix); gradient descent.

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
from bt_helpers import loss, plots, widgets
from bt_helpers.config import PRESETS

preset, images = bt_helpers.start()

# %% [markdown]
# ## 1. Two terms, two jobs
#
# **Invariance**, `sum_i (1 - c_ii)^2`: each feature should take the same value (up to a
# positive scale and a shift) for both views of an image, whatever the augmentations did. It is
# 0 when the diagonal of `c` is all ones.
#
# **Redundancy reduction**, `sum_{i != j} c_ij^2`: two different features should not be
# correlated, so that each of the `D` dimensions carries information the others do not. It is
# 0 when `c` is diagonal.
#
# Written with loops, straight from the formula, and checked against
# `bt_helpers.loss.barlow_twins_terms` (which returns the redundancy term already multiplied
# by `lambda`, so that `loss = invariance + redundancy`):

# %%
def terms_by_hand(c, lambda_offdiag):
    """The two terms of the Barlow Twins loss of a (D, D) matrix c, with plain loops."""
    d = len(c)
    invariance = sum((1 - c[i, i]) ** 2 for i in range(d))
    off_diagonal = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
    return invariance, lambda_offdiag * off_diagonal


z_a, z_b = loss.toy_views(256, 16, noise=0.5, redundancy=0.3, seed=0)
terms = loss.barlow_twins_terms(z_a, z_b, lambda_offdiag=0.0051)
np.testing.assert_allclose(terms_by_hand(terms.c.numpy(), 0.0051),
                           [float(terms.invariance), float(terms.redundancy)], rtol=1e-5)
print(f"invariance {float(terms.invariance):.4f}, redundancy {float(terms.redundancy):.4f}: "
      "the loops and the package agree")

# %% [markdown]
# Now five pairs of views of `N = 256` images with `D = 16` features, each one a way to
# succeed or to fail:
#
# - **ideal**: identical views of *whitened* features (uncorrelated, exactly, on this batch);
# - **redundant**: identical views, but every pair of features has correlation 0.6;
# - **noisy**: decorrelated features, with independent noise in each view;
# - **dimensional collapse**: every one of the 16 features is the same number, in both views;
# - **complete collapse**: the network outputs the same vector for every image.

# %%
# NBVAL_CHECK_OUTPUT
rng = np.random.default_rng(0)
z = rng.normal(size=(256, 16))
z = z - z.mean(0)
evals, evecs = np.linalg.eigh(z.T @ z / len(z))
white = (z @ evecs / np.sqrt(evals)).astype("float32")     # covariance = identity
redundant, _ = loss.toy_views(256, 16, noise=0.0, redundancy=0.6, seed=1)
one_feature = np.repeat(rng.normal(size=(256, 1)), 16, axis=1).astype("float32")
constant = np.ones((256, 16), dtype="float32")
pairs = {"ideal": (white, white), "redundant": (redundant, redundant),
         "noisy": loss.toy_views(256, 16, noise=0.7, seed=2),
         "dimensional collapse": (one_feature, one_feature),
         "complete collapse": (constant, constant)}
print(f"{'':22s} {'invariance':>10s} {'sum c_ij^2':>11s} {'loss (lambda=0.0051)':>21s}")
for name, (a, b) in pairs.items():
    t = loss.barlow_twins_terms(a, b, lambda_offdiag=0.0051)
    print(f"{name:22s} {float(t.invariance):10.2f} {float(t.redundancy) / 0.0051:11.2f} "
          f"{float(t.loss):21.2f}")

# %% [markdown]
# Read the table row by row:
#
# - **ideal** costs nothing: `c` is the identity.
# - **redundant** passes the invariance test but pays for its correlated features.
# - **noisy** pays on the diagonal (`c_ii` about `1 / (1 + 0.7^2)`); the off-diagonal sum is
#   the sampling noise floor of notebook 02, about `D (D - 1) / N`.
# - **Dimensional collapse** is the trap the invariance term alone would fall into: one number
#   copied into every feature is perfectly invariant (invariance 0), and only the redundancy
#   term, with all `D (D - 1) = 240` entries at 1, sees that 15 of the 16 dimensions are wasted.
# - **Complete collapse** (a constant output, the classic failure of learning from pairs of
#   views alone) is ruled out by the *standardisation* inside `c`: a constant feature
#   standardises to 0, so `c = 0` and the invariance term is at its worst, `D = 16`. (With the
#   2021 example's formula this row would be NaN; section 4.)
#
# So each term blocks one kind of collapse; neither would suffice alone. But look at the last
# column: with the paper's `lambda = 0.0051` and only `D = 16` features, the dimensional
# collapse (1.22) costs *less* than the honest noisy features (1.75). A `lambda` tuned for
# `D = 8192` is far too small for 16 features; section 2 explains why `lambda` must scale
# with `1/D`.

# %% [markdown]
# ## 2. Why lambda is about 1/D
#
# The invariance term sums `D` numbers; the redundancy term sums `D (D - 1)`. Written per
# feature,
#
# $$\mathcal{L} = \sum_i \Big[ (1 - c_{ii})^2 + \lambda (D - 1)\,
#    \overline{c_{i\cdot}^2} \Big],$$
#
# where $\overline{c_{i\cdot}^2}$ is the *mean* squared correlation of feature `i` with the
# `D - 1` others. So `lambda (D - 1)`, about `lambda * D`, is the price of one unit of average
# correlation against one unit of invariance error. With `lambda = 1` the loss would be almost
# all redundancy term for any realistic `D` and the features would never need to be invariant;
# with `lambda = 0` it would be collapse-friendly. What matters is `lambda * D`, so `lambda`
# scales like `1/D`. The paper's `lambda = 0.0051` was tuned for `D = 8192`, which gives
# `lambda * D` of about 42. The course's presets:

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'':28s} {'D':>5s} {'lambda':>7s} {'lambda * D':>10s}")
rows = [("paper (ImageNet)", 8192, 0.0051)]
rows += [(f"preset '{name}'", p.proj_dim, p.lambda_offdiag) for name, p in PRESETS.items()]
for name, d, lam in rows:
    print(f"{name:28s} {d:5d} {lam:7.4f} {lam * d:10.1f}")

# %% [markdown]
# solo-learn's CIFAR recipe, which the presets follow, keeps 0.0051 with `D = 2048`
# (`lambda * D` about 10). The `teaching` preset keeps that balance with its 512-wide
# projector: `lambda = 0.02` (`lambda * D` about 10; measured in ten-minute runs on CIFAR-10,
# see the README). The `full` preset keeps the paper's value. The tiny projector of the `ci`
# preset weighs redundancy much less; section 3 shows what that changes on a toy problem,
# and exercise 5 asks you to rescale `lambda`.
#
# The slider below shows the balance on a matrix `c` from toy views (noise 0.5, correlation
# 0.3 between features, `D = 64`): the invariance term does not depend on `lambda` (red, flat),
# the weighted redundancy term grows linearly with it (blue). The dashed line is `1/D`, the
# dotted line where both terms are equal. Slide from `1e-5` to 1 and watch the share of each
# term in the loss swing from one extreme to the other within two orders of magnitude around
# `1/D`. (The static figure shows the paper's value.)

# %%
c_toy = loss.cross_correlation(*loss.toy_views(256, 64, noise=0.5, redundancy=0.3, seed=3))
fig = plots.plot_lambda_balance(c_toy.numpy(), lambda_offdiag=0.0051)

# %%
widgets.lambda_explorer(c_toy.numpy(), lambda_offdiag=0.0051)

# %% [markdown]
# ## 3. Gradient descent moves `c` towards the identity
#
# To watch the loss at work without a ResNet, take a toy "image": a vector `x` of 16 numbers
# whose variances shrink from 4 down to 0.01, seen in two "views" that each add their own
# noise of standard deviation 0.5. The first coordinates are mostly signal, the last ones
# mostly noise. The encoder is one linear layer `W` (16 -> `D = 8`), shared by both views, and
# we minimise the Barlow Twins loss of `z_a = x_a W`, `z_b = x_b W` with Adam.

# %%
N_TOY, K, D = 512, 16, 8
rng = np.random.default_rng(0)
signal_std = np.geomspace(2.0, 0.1, K)                      # per input coordinate
x = rng.normal(size=(N_TOY, K)) * signal_std
x_a = (x + 0.5 * rng.normal(size=(N_TOY, K))).astype("float32")
x_b = (x + 0.5 * rng.normal(size=(N_TOY, K))).astype("float32")


def train_linear(lambda_offdiag, steps=300, frames=(), learning_rate=0.02):
    """Adam on the Barlow Twins loss of a linear encoder; returns frames and term history."""
    w = tf.Variable(np.random.default_rng(1).normal(size=(K, D)).astype("float32") / np.sqrt(K))
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            t = loss.barlow_twins_terms(x_a @ w, x_b @ w, lambda_offdiag)
        optimizer.apply_gradients([(tape.gradient(t.loss, w), w)])
        return t

    snapshots, history = [], {"invariance": [], "redundancy": []}
    for i in range(steps):
        t = step()   # terms *before* this step's update
        history["invariance"].append(float(t.invariance))
        history["redundancy"].append(float(t.redundancy))
        if i in frames:
            snapshots.append((i, t.c.numpy()))
    return snapshots, history, loss.barlow_twins_terms(x_a @ w, x_b @ w, lambda_offdiag)


start = time.perf_counter()
frames, history, final = train_linear(10 / D, frames=(0, 10, 50, 299))
print(f"300 steps in {time.perf_counter() - start:.1f} s; final loss {float(final.loss):.3f}")
fig = plots.plot_correlation_frames(frames, history, title="c during training (lambda * D = 10)")

# %% [markdown]
# Step 0 is a random linear map: the diagonal is already well above 0 (the strong input
# coordinates dominate any random combination, in both views), but there is a lot of red and
# blue off the diagonal, because random combinations of the same few strong coordinates are
# correlated with each other. Within 50 steps the off-diagonal fades to almost white and the
# diagonal rises: the eight features have become eight *different* directions of the input,
# each about as invariant as the noise allows.
#
# Why not exactly 1 on the diagonal? Each view adds noise that no linear map can remove.
# For decorrelated features the sum of the diagonal is limited by the best eight
# signal-to-noise ratios of the input, `var(signal) / (var(signal) + 0.25)`:

# %%
snr = np.sort(signal_std ** 2 / (signal_std ** 2 + 0.25))[::-1]
print("learned c_ii, sorted:        ", np.round(np.sort(np.diag(final.c.numpy()))[::-1], 2))
print("best 8 signal-to-noise ratios:", np.round(snr[:D], 2))
print(f"sum of learned c_ii = {np.trace(final.c.numpy()):.2f}; "
      f"sum of the best 8 ratios = {snr[:D].sum():.2f}")

# %% [markdown]
# The learned features share the available invariance almost evenly (the loss squares
# `1 - c_ii`, so spreading the error is cheaper than leaving one feature bad) and their sum
# comes close to the limit.
#
# ### Too small, too large
#
# Now train the same encoder with `lambda * D` from 0.01 to 100 and look at where each run
# ends: the invariance term (red) and the *unweighted* sum of squared off-diagonal entries
# (blue).

# %%
lambdas = np.array([0.01, 0.1, 1.0, 10.0, 100.0]) / D
results = [train_linear(lam)[2] for lam in lambdas]
inv = [float(r.invariance) for r in results]
off = [float(r.redundancy) / lam for r, lam in zip(results, lambdas)]
for lam, i, o in zip(lambdas, inv, off):
    print(f"lambda * D = {lam * D:6.2f}: invariance {i:.3f}, sum c_ij^2 {o:.3f}")
fig = plots.plot_lambda_sweep(lambdas, inv, off, proj_dim=D)

# %% [markdown]
# With a tiny `lambda` the features are very invariant and very redundant: they all crowd
# into the few most reliable input directions (the dimensional collapse of section 1, in
# progress). With a huge `lambda` they are decorrelated, but some had to move to noisy input
# directions and the invariance term is worse; the redundancy term also dominates every
# gradient step, so the invariance improves more slowly. In between, from about
# `lambda * D = 1` to 10, both are low. That is the sense in which `lambda` should be "about
# `1/D`", give or take an order of magnitude, and why the paper's `lambda` would have to
# shrink if you widened its projector.

# %% [markdown]
# ## 4. The missing epsilon: NaN from one constant feature
#
# The 2021 Keras example standardised each feature with
# `(z - mean) / tf.math.reduce_std(z, axis=0)`. If a feature is constant over the batch, its
# standard deviation is exactly 0 and the division is `0 / 0 = NaN`. One NaN entry in `c`
# makes the loss NaN, and the gradient NaN *for every weight*, so one bad step destroys the
# whole network. A feature is constant when the network has collapsed (every image gives the
# same output), when a batch holds copies of one image, or when a low-precision (float16)
# feature varies less than its rounding step.
#
# BatchNorm has always avoided this by dividing by `sqrt(var + eps)`; the official
# implementation uses a BatchNorm layer without scale and offset, `eps = 1e-5`, and so does
# `bt_helpers.loss.normalize`. A constant feature then standardises to 0: `c_ii = 0`, the
# invariance term charges it 1, and its gradient is finite.

# %%
# NBVAL_CHECK_OUTPUT
def normalize_2021(z):
    """The 2021 example's standardisation: no epsilon."""
    return (z - tf.reduce_mean(z, axis=0)) / tf.math.reduce_std(z, axis=0)


def loss_2021_formula(z_a, z_b, lambda_offdiag=5e-3):
    c = tf.transpose(normalize_2021(z_a)) @ normalize_2021(z_b) / z_a.shape[0]
    on_diag = tf.pow(tf.linalg.diag_part(c) - 1, 2)
    off_diag = tf.pow(tf.linalg.set_diag(c, tf.zeros(c.shape[-1])), 2) * lambda_offdiag
    return tf.reduce_sum(on_diag) + tf.reduce_sum(off_diag)


a, b = loss.toy_views(64, 8, noise=0.5, seed=4)
a[:, 3] = 0.0                                  # feature 3 is constant over the batch
w = tf.Variable(tf.eye(8))                     # a layer in front of z, to see its gradient
for name, fn in [("2021 formula", loss_2021_formula),
                 ("bt_helpers  ", lambda p, q: loss.barlow_twins_loss(p, q, 5e-3))]:
    with tf.GradientTape() as tape:
        value = fn(a @ w, b @ w)
    grad = tape.gradient(value, w).numpy()
    print(f"{name}: loss = {float(value):.4f}, NaN entries in the gradient: "
          f"{int(np.isnan(grad).sum())} of {grad.size}")

# %% [markdown]
# ## 5. The 2021 loss class against the package
#
# For the record, here is the 2021 example's `BarlowLoss`, rewritten for Keras 3 from its
# description (a fixed `batch_size` given to the constructor, `lambda = 5e-3`, no epsilon,
# `set_diag` and `pow` for the off-diagonal term), next to `bt_helpers.loss.BarlowTwinsLoss`.
# On ordinary inputs with the same `lambda` they agree to about `1e-5`, relative; the
# differences are in the details: the paper's `lambda` is 0.0051, not 0.005; the batch size
# baked into the old class is wrong for a last, smaller batch (which is why the example
# dropped it, losing data: `drop_remainder=True`); the missing epsilon; and the old class
# would use per-replica statistics on several GPUs, where the package uses the global batch.

# %%
class BarlowLoss2021(keras.losses.Loss):
    """The 2021 Keras example's loss, rewritten: fixed batch size, lambda 5e-3, no epsilon."""

    def __init__(self, batch_size):
        super().__init__()
        self.lambda_amt, self.batch_size = 5e-3, batch_size

    def call(self, z_a, z_b):
        c = tf.transpose(normalize_2021(z_a)) @ normalize_2021(z_b) / self.batch_size
        on_diag = tf.pow(tf.linalg.diag_part(c) - 1, 2)
        off_diag = tf.pow(tf.linalg.set_diag(c, tf.zeros(c.shape[-1])), 2) * self.lambda_amt
        return tf.reduce_sum(on_diag) + tf.reduce_sum(off_diag)

# %%
# NBVAL_CHECK_OUTPUT
old, new = BarlowLoss2021(batch_size=256), loss.BarlowTwinsLoss()   # new: lambda = 0.0051
z_a, z_b = loss.toy_views(256, 64, noise=0.5, redundancy=0.1, seed=5)
same_lambda = float(loss.barlow_twins_loss(z_a, z_b, lambda_offdiag=5e-3))
print(f"full batch of 256:  old {float(old(z_a, z_b)):.4f} | package, lambda 0.005: "
      f"{same_lambda:.4f} | package, lambda 0.0051: {float(new(z_a, z_b)):.4f}")
part_a, part_b = z_a[:100], z_b[:100]           # a last batch of 100 pairs
print(f"last batch of 100:  old {float(old(part_a, part_b)):.4f} (c divided by 256) | package, "
      f"lambda 0.005: {float(loss.barlow_twins_loss(part_a, part_b, 5e-3)):.4f}")
z_a[:, 0] = 1.0                                 # one constant feature
print(f"constant feature:   old {float(old(z_a, z_b)):.4f} | package: {float(new(z_a, z_b)):.4f}")

# %% [markdown]
# And the cost: the loss and its gradient for one batch of the preset's size, with both
# compiled by `tf.function`. The package folds `1/N` into the `(N, D)` side, computes the
# diagonal without reading `c`, and avoids the masked copy of `c` that `set_diag` makes; when
# `D > N` it does not form `c` at all (the sum of its squares equals that of the elementwise
# product of the two `N x N` Gram matrices). `benchmarks/bench_loss.py` measures this properly
# (interleaved runs, medians) for `N = 512` and `D` from 2048 to 8192.

# %%
def time_loss_and_gradient(fn, z_a, z_b, repeats=5):
    @tf.function
    def step(z_a, z_b):
        with tf.GradientTape() as tape:
            tape.watch([z_a, z_b])
            value = fn(z_a, z_b)
        return value, tape.gradient(value, [z_a, z_b])

    step(z_a, z_b)                                        # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(z_a, z_b)[0].numpy()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


z_a, z_b = (tf.constant(v) for v in loss.toy_views(preset.batch_size, preset.proj_dim, seed=6))
t_old = time_loss_and_gradient(BarlowLoss2021(preset.batch_size), z_a, z_b)
t_new = time_loss_and_gradient(loss.BarlowTwinsLoss(), z_a, z_b)
print(f"N = {preset.batch_size}, D = {preset.proj_dim}: 2021 class {t_old:.2f} ms, "
      f"package {t_new:.2f} ms per loss + gradient")

# %% [markdown]
# ## Summary
#
# - The **invariance** term pulls the diagonal of `c` to 1: each feature must ignore the
#   augmentations. Alone, it would be satisfied by copying one feature everywhere.
# - The **redundancy** term pushes the off-diagonal to 0: features must carry different
#   information. Standardising the features over the batch rules out the constant output.
# - `lambda` trades one against the other; what matters is `lambda * D`, so `lambda` scales
#   like `1/D` (the paper: 0.0051 for `D = 8192`).
# - Standardise with an epsilon (`sqrt(var + eps)`), or one constant feature turns every
#   gradient into NaN.
# - `bt_helpers.loss.barlow_twins_loss` / `BarlowTwinsLoss` compute the paper's loss in
#   float32, with the global batch under `tf.distribute`, and check their inputs in eager mode.
#
# ## Exercises
#
# 1. In section 1, add a pair where view B is view A with its features in a random order
#    (`z[:, perm]`). Which term notices, and by how much?
# 2. In `train_linear`, replace the input noise of 0.5 by 0.1. How close does the diagonal get
#    to 1, and does the best `lambda * D` change?
# 3. Train the toy encoder with `D = 32` features from the 16 input coordinates. What must
#    happen to the off-diagonal entries, and what does the loss converge to?
# 4. Show that the loss is symmetric: `barlow_twins_loss(z_a, z_b) == barlow_twins_loss(z_b,
#    z_a)`. Which property of `c` does this rely on?
# 5. Keep `lambda * D` fixed at the paper's 42 and compute the `lambda` each preset would
#    use. Rerun the table of section 1 with `lambda = 42 / 16`: does the dimensional collapse
#    still cost less than the noisy features?
