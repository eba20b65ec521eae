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
# # 05 · Training
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/barlow-twins-course/barlow-twins-course/blob/main/notebooks/05_training.ipynb)
#
# Notebooks 01-04 built the pieces: two augmented views of every image, the cross-correlation
# matrix `c` of their embeddings, the loss that pushes `c` towards the identity, and the
# encoder + projector that make the embeddings. This notebook puts them in a training loop and
# runs it on real images.
#
# **What you will learn**
# - what one training step does, written by hand with `tf.GradientTape`, and checked against
#   the package's `train_step`;
# - why Barlow Twins trains with **LARS**, an optimiser that gives each layer a step size
#   proportional to the size of its weights, and with a warm-up + cosine learning rate;
# - how to run, watch and *resume* a real training run: progress bar, per-step loss terms,
#   a kNN accuracy monitor, atomic checkpoints;
# - what training does to `c`, before against after;
# - how the same code scales to a GPU, to several GPUs and to several machines.
#
# **Runtime**: about 8 minutes with the `teaching` preset on 2 CPU cores (8.3 measured, of which
# the 6-epoch training run took 6.4); under a minute with the `ci` preset. With a GPU the `full` preset's run is
# described, not run (section 7).
#
# **Prerequisites**: notebooks 01-04.

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
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import bt_helpers
from bt_helpers import augment, loss, models, optim, plots, train

preset, images = bt_helpers.start()

# %% [markdown]
# ## 1. One training step, by hand
#
# A step of Barlow Twins, for a batch of `N` images:
#
# 1. make two augmented views `x_a`, `x_b` of every image (notebook 01);
# 2. embed both with the *same* encoder and projector: `z_a = projector(encoder(x_a))`, same
#    for `z_b`, both `(N, D)` (notebook 04);
# 3. compute the loss of `c`, the `(D, D)` cross-correlation of `z_a` and `z_b`
#    (notebooks 02-03);
# 4. differentiate the loss with respect to every weight and let the optimiser update them.
#
# Both views go through the network in training mode, so every BatchNorm layer normalises with
# the statistics of its own batch of views. Here is the step written out, on one batch:

# %%
network = models.build_from_preset(preset, seed=0)
optimizer = optim.make_optimizer(preset, steps_per_epoch=100)
batch = images.x_train[:preset.batch_size]                          # (N, 32, 32, 3) uint8
x_a, x_b = augment.two_views(batch, recipe=preset.recipe, seed=0)   # float32 in [0, 1]
x_a, x_b = train.resize_images(x_a, preset.image_size), train.resize_images(x_b, preset.image_size)

with tf.GradientTape() as tape:
    z_a = network.projector(network.encoder(x_a, training=True), training=True)  # (N, D)
    z_b = network.projector(network.encoder(x_b, training=True), training=True)  # (N, D)
    invariance, redundancy, c = loss.barlow_twins_terms(z_a, z_b, preset.lambda_offdiag)
    total = invariance + redundancy
variables = network.model.trainable_variables
gradients = tape.gradient(total, variables)
optimizer.apply(gradients, variables)
print(f"views {tuple(x_a.shape)} -> z {tuple(z_a.shape)} -> c {tuple(c.shape)}")
print(f"loss {float(total):.2f} = invariance {float(invariance):.2f} "
      f"+ redundancy {float(redundancy):.2f}; {len(variables)} weight tensors updated")

# %% [markdown]
# `bt_helpers.train.BarlowTwinsModel` is a `keras.Model` whose `train_step` does exactly this
# (plus the bookkeeping `fit` needs). Build one from the *same* initial weights, give it the
# same two views, and compare every weight after one step:

# %%
twin = train.build_model(preset, seed=0)                  # same seed: same initial weights
twin.compile(optimizer=optim.make_optimizer(preset, steps_per_epoch=100))
logs = twin.train_step((x_a, x_b))
for ours, theirs in zip(network.model.weights, twin.encoder.weights + twin.projector.weights):
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-5)
print(f"train_step loss {float(logs['step_loss']):.2f} (by hand {float(total):.2f}); "
      f"all {len(twin.weights)} weights equal after one step")

# %% [markdown]
# ## 2. LARS: a step size per layer
#
# A ResNet's layers have very different scales: the first convolution has a few hundred
# weights, the projector's layers hundreds of thousands. A single learning rate that suits one
# is too big or too small for another, and with the large batches self-supervised learning
# uses, plain SGD either diverges or crawls. **LARS** (You et al., 2017) rescales each layer's
# step by a *trust ratio*:
#
# $$g \leftarrow g + w_d\, w, \qquad
#   q = \eta\,\frac{\lVert w \rVert}{\lVert g \rVert}, \qquad
#   \mu \leftarrow 0.9\,\mu + q\,g, \qquad w \leftarrow w - \text{lr}\cdot\mu .$$
#
# So every weight matrix moves by about `lr * eta` *of its own size* per step, whatever the
# size of its gradient. Biases and BatchNorm parameters (the 1-D variables) skip both the
# weight decay and the ratio, as in the official code. A toy check: multiply the gradient by
# 1000 and see which variables care.

# %%
# NBVAL_CHECK_OUTPUT
def one_lars_step(scale):
    kernel = keras.Variable(np.full((4, 3), 0.5, np.float32))   # 2-D: adapted
    bias = keras.Variable(np.full((3,), 0.5, np.float32))       # 1-D: plain momentum SGD
    gradient = scale * np.array([[1.0, -2.0, 0.5]] * 4, np.float32)
    opt = optim.LARS(learning_rate=1.0, eta=0.001, weight_decay=0.0)
    opt.apply([tf.constant(gradient), tf.constant(gradient[0])], [kernel, bias])
    return 0.5 - kernel.numpy()[0], 0.5 - bias.numpy()


for scale in (1.0, 1000.0):
    kernel_step, bias_step = one_lars_step(scale)
    print(f"gradient x{scale:>6g}: kernel step {np.round(kernel_step, 5)}, "
          f"bias step {np.round(bias_step, 2)}")

# %% [markdown]
# The kernel's step is the same for both gradients (its size is set by `eta * ||w||`); only
# its direction comes from the gradient. The bias's step grew a thousandfold. The second
# ingredient is the **learning-rate schedule**: a linear warm-up (the first steps of a
# randomly initialised network have erratic gradients) and then a cosine decay to 0.1 % of the
# peak, with the peak scaled with the batch size (`base_lr * batch_size / 256`). The schedule
# of this preset's run:

# %%
steps_per_epoch = train.steps_per_epoch(len(images.x_train), preset.batch_size)
schedule = optim.make_schedule(preset, steps_per_epoch)
print(f"peak {schedule.peak_lr:.3g} (base_lr {preset.base_lr} x {preset.batch_size}/256), "
      f"{schedule.warmup_steps} warm-up steps of {schedule.total_steps}")
fig = plots.plot_lr_schedule(schedule, schedule.total_steps, steps_per_epoch=steps_per_epoch)

# %% [markdown]
# ## 3. Training with `fit`
#
# `train.train` puts it together: it builds the model of the preset, feeds it batches whose
# order and views are a pure function of `(seed, epoch, step)`, and after every epoch
# computes a **kNN accuracy** (classify each held-out image by the labels of its 200 nearest
# training images in feature space, no training needed), writes a checkpoint and the logs.
# Before training, the same kNN accuracy of the *untrained* encoder gives the baseline to beat:
# a random convolutional network already computes features a nearest-neighbour vote can use.
#
# It computes in bfloat16 where the hardware does so natively: GPUs, and CPUs with
# AVX512-BF16 or AMX instructions, where the `teaching` step runs about 1.25 times faster
# than in float32 (`train.use_gpu_features` decides; the run prints its choice). Weights and
# the loss stay in float32.
#
# We also keep `c` of a fixed batch of held-out views, to compare after training.

# %%
RUN_DIR = Path(os.environ.get("BT_RUN_DIR", Path("runs") / preset.name))
n_bank = min(train.KNN_BANK_SIZE, len(images.x_train))
bank = np.random.default_rng(0).permutation(len(images.x_train))[:n_bank]
monitor = train.KNNMonitor(images.x_train[bank], images.y_train[bank], images.x_val,
                           images.y_val, image_size=preset.image_size)
untrained = train.build_model(preset, seed=0)
monitor.set_model(untrained)
knn_random = monitor.accuracy()
print(f"kNN accuracy of the untrained encoder: {knn_random:.1%} "
      f"(chance {1 / images.num_classes:.0%})")

probe_views = augment.two_views(images.x_val[:512], recipe=preset.recipe, seed=1)
probe_views = [train.resize_images(v, preset.image_size) for v in probe_views]
c_before = loss.cross_correlation(untrained(probe_views[0]), untrained(probe_views[1]))

# %% [markdown]
# Now the run. It writes into `RUN_DIR` (notebook 06 evaluates what it finds there). If that
# folder already holds a finished run of this preset, `train` says so and returns at once;
# if it holds an interrupted one, it resumes.

# %%
start = time.perf_counter()
result = train.train(preset, images, out_dir=RUN_DIR, seed=0)
print(f"{time.perf_counter() - start:.0f} s")

# %% [markdown]
# ## 4. What the logs say
#
# The run recorded both terms of the loss at every step (`result.steps`, also
# `RUN_DIR/steps.csv`) and one row per epoch (`result.history`, `RUN_DIR/history.csv`).
# A log scale shows both terms at once:

# %%
fig = plots.plot_training_curves(result.steps, smooth=10, epoch_steps=steps_per_epoch,
                                 title=f"Barlow Twins on {images.source} "
                                       f"(preset '{preset.name}')")

# %% [markdown]
# The invariance term falls fast: making the two views of an image agree is the easy part,
# and a network could do it by outputting a constant... were it not for the redundancy term.
# That one *rises* at first, as the features, initially nearly independent random functions,
# start to agree between views and therefore with each other; from then on the optimiser
# trades the two off, and the total keeps falling. The kNN accuracy is the measure that does
# not depend on the loss:

# %%
fig = plots.plot_knn_accuracy(result.history, baseline=knn_random,
                              chance=1 / images.num_classes)
for row in result.history:
    knn = "" if row["knn_accuracy"] is None else f", kNN {row['knn_accuracy']:.1%}"
    print(f"epoch {row['epoch']}: loss {row['loss']:.1f}{knn}, "
          f"{row['pairs_per_second']:.0f} pairs/s")

# %% [markdown]
# ## 5. `c`, before and after
#
# The loss asks `c` to become the identity. On the same held-out views as before training
# (the first 64 of the `D` features):

# %%
model = result.model
c_after = loss.cross_correlation(model(probe_views[0]), model(probe_views[1]))
before, after = plots.correlation_stats(c_before), plots.correlation_stats(c_after)
print(f"mean c_ii: {before['mean_diagonal']:.2f} -> {after['mean_diagonal']:.2f}; "
      f"rms off-diagonal c_ij: {before['rms_off_diagonal']:.3f} -> "
      f"{after['rms_off_diagonal']:.3f}")
fig = plots.plot_cross_correlations({"before training": np.asarray(c_before)[:64, :64],
                                     "after training": np.asarray(c_after)[:64, :64]},
                                    suptitle="c on held-out views (first 64 features)")

# %% [markdown]
# Before training, the diagonal is already well above 0, because two views of one image look
# alike even to random features, and many off-diagonal entries are far from 0, because random
# features are redundant. After training both terms show (compare the values printed above):
# the diagonal is brighter, as the two views of an image now agree on most features, and the
# background is darker, as the features became less redundant with one another. Six epochs
# of a small network are a start: the diagonal is still far from 1. Exercise 5 asks what a
# longer run does.
#
# ## 6. Interrupted? Run it again
#
# Training runs get interrupted: a laptop lid closes, Colab disconnects, a job is pre-empted.
# After every epoch `train` writes `checkpoint.npz` *atomically*: to a temporary file, flushed
# to disk, then renamed over the previous one, so the file is always either the previous
# complete checkpoint or the new complete one. It holds the weights, BatchNorm statistics,
# the optimiser's momentum buffers and step counter (which drives the schedule), the epoch and
# the history. The batches and views of step `s` depend only on `(seed, epoch, s)`, so a
# resumed run sees what an uninterrupted one would have seen.

# %%
for path in sorted(RUN_DIR.iterdir()):
    size = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
    print(f"{path.name:<16} {size / 1e6:8.2f} MB")
meta = train.read_checkpoint_meta(RUN_DIR / train.CHECKPOINT_NAME)
print(f"checkpoint: epoch {meta['epoch']}, optimizer step {meta['step']}")

# %% [markdown]
# Asking for one more epoch continues from that checkpoint: the run does not start over, the
# step counter goes on, and the history gains one row. (It stretches the cosine schedule to
# the new length from here on; with the same number of epochs there would be nothing to do.)
# We do it in a scratch copy, so that `RUN_DIR` stays the run of the preset for notebook 06.

# %%
scratch = RUN_DIR.with_name(RUN_DIR.name + "-resume-demo")
shutil.rmtree(scratch, ignore_errors=True)
shutil.copytree(RUN_DIR, scratch)
more = train.train(preset, images, out_dir=scratch, epochs=preset.epochs + 1, seed=0,
                   knn_every=0, export=False)
print(f"resumed at epoch {more.initial_epoch}; epochs now {[r['epoch'] for r in more.history]}; "
      f"optimizer step {int(more.model.optimizer.iterations.numpy())}")
shutil.rmtree(scratch)

# %% [markdown]
# The same from a terminal, where a plain re-run of the command resumes:
#
# ```bash
# python -m bt_helpers train --preset teaching --out runs/teaching   # Ctrl-C, kill -9, ...
# python -m bt_helpers train --preset teaching --out runs/teaching   # ... continues
# python -m bt_helpers eval --checkpoint runs/teaching               # notebook 06 in one line
# ```
#
# If the loss ever becomes NaN or infinite (too high a learning rate, say), training stops at
# once with a message naming the step and the last good checkpoint, which is never
# overwritten by a broken one.
#
# ## 7. The full preset on a GPU
#
# The `full` preset is the paper's CIFAR configuration at a GPU's scale: ResNet-34 with the
# CIFAR stem (width 64), the 8192-8192-8192 projector, batch 512, 200 epochs with 10 of
# warm-up, LARS. On a GPU it computes in bfloat16 (float16 with loss scaling on GPUs
# without bfloat16, such as Colab's T4), makes the two views *inside* the compiled training
# step (only `uint8` images cross from the CPU) and compiles the step with XLA:
#
# ```bash
# python -m bt_helpers train --preset full --out runs/full
# ```
#
# **Expected time and accuracy: an estimate, not a measurement** (no GPU was available when
# this notebook was run). One image pair costs about 2 x 3 x 2.6 GFLOPs (two views, forward
# and backward, `models.count_flops` of ResNet-34 + projector), so an epoch of 50,000 pairs is
# about 0.8 PFLOPs: a few seconds on an H100/H200 at a realistic 30-50 % of its bfloat16 peak,
# so 200 epochs in about 10-20 minutes; on a T4 (65 TFLOP/s peak in float16) expect
# 1-2 minutes per epoch, hours for the whole run. For accuracy, solo-learn reports 92.1 %
# linear-probe accuracy for Barlow Twins with a ResNet-18 after 1,000 epochs on CIFAR-10; a
# 200-epoch run typically lands a few points lower, roughly 85-90 %.
# `python benchmarks/bench_train.py gpu` measures the epoch time where a GPU is present.
#
# **On Colab**: open this notebook with the badge at the top, choose *Runtime > Change runtime
# type > GPU*, and run all: the first cell installs the package and selects the `full` preset.
# A Colab session can end before 200 epochs; point `RUN_DIR` at your Google Drive
# (`from google.colab import drive; drive.mount("/content/drive")`, then
# `os.environ["BT_RUN_DIR"] = "/content/drive/MyDrive/bt-runs/full"`) and re-running the
# notebook resumes.
#
# **Several GPUs** on one machine are used automatically (`tf.distribute.MirroredStrategy`):
# the batch is split across them, every BatchNorm is synchronised, and the loss is computed on
# the *global* batch (the statistics and `c` are summed across GPUs before the loss), so the
# result is the same as on one large GPU. **Several machines**: start the same command on each
# with a `TF_CONFIG` that lists all of them and says which one this is; the README shows one.
# A test runs two worker processes on one machine and checks that their weights equal a
# single-process run on the same batches.
#
# ## Summary
#
# - A Barlow Twins step: two views, one shared network, the loss of their cross-correlation,
#   one optimiser update. `BarlowTwinsModel.train_step` is that step, checked weight for weight
#   against the hand-written one.
# - LARS sets each layer's step relative to the size of its weights; biases and BatchNorm
#   parameters are excluded. The learning rate warms up linearly, then decays as a cosine.
# - The invariance term drops first, the redundancy term rises and then falls; the kNN
#   accuracy on held-out images, compared with the untrained encoder's, says whether the
#   features got better.
# - Checkpoints are atomic and complete (weights, optimiser, schedule position, data order),
#   so a killed run resumes where it stopped.
#
# ## Exercises
#
# 1. Train with `preset.replace(optimizer="lamb")` (the 2021 example's optimiser) for the same
#    number of epochs. Compare the kNN accuracy. Then try LARS with a ten times larger
#    `base_lr`: what happens, and what does the error message tell you?
# 2. Set `lambda_offdiag` to 0 (no redundancy term) and train for one epoch. Look at the
#    loss terms and at `c` after training: what did the network learn to do?
# 3. In section 1, run the hand-written step five times on the *same* batch and print the two
#    terms each time. Which one moves first?
# 4. Interrupt a run yourself: start `python -m bt_helpers train --preset ci --out runs/ci-demo`
#    in a terminal, press Ctrl-C during the second epoch, run it again, and compare
#    `runs/ci-demo/history.csv` with an uninterrupted run.
# 5. Train the `teaching` preset for 20 epochs (`preset.replace(epochs=20)`, about 19 minutes on
#    2 cores, in another run folder) and redo section 5: how close does the diagonal of `c` get
#    to 1, and does the background keep fading?
