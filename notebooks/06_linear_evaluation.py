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
# # 06 · Linear evaluation done right
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/barlow-twins-course/barlow-twins-course/blob/main/notebooks/06_linear_evaluation.ipynb)
#
# Pretraining never saw a label. Whether it learned anything useful is measured afterwards:
# freeze the encoder, turn every image into a feature vector, and see how well a *linear*
# classifier (or a nearest-neighbour vote) separates the classes with those features. This
# notebook does that for the encoder trained in notebook 05, and compares it, with the same
# probe on the same images, to what you get without self-supervised learning.
#
# **What you will learn**
# - the linear-evaluation protocol, and three ways the 2021 Keras example got it wrong (it
#   dropped 272 test images, probed the projector instead of the backbone, and chose nothing
#   on a validation split);
# - a linear probe by hand in Keras, then the package's version (standardisation, a penalty
#   chosen on held-out training data, early stopping), checked against each other;
# - backbone vs projector vs a random-init encoder vs raw pixels: what pretraining bought;
# - the kNN monitor, a confusion matrix, a 2-D map of the features, nearest-neighbour
#   retrieval, and how accuracy holds up with 1 % and 10 % of the labels.
#
# **Runtime**: about 2 minutes with the `teaching` preset on 2 CPU cores when notebook 05's run
# is there (add the training time of notebook 05 when it is not); well under a minute with
# `ci`. No GPU needed.
#
# **Prerequisites**: notebook 04 (encoder and projector) and notebook 05 (the training run).

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
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

import bt_helpers
from bt_helpers import evaluate, plots, train

preset, images = bt_helpers.start()

# %% [markdown]
# ## 1. The protocol
#
# A self-supervised encoder is judged by its **frozen** features:
#
# 1. run the encoder, in inference mode and without augmentation, over the labelled training
#    images and over held-out images;
# 2. train a linear classifier (one softmax layer) on the training features, choosing its
#    settings on part of the *training* data;
# 3. report its accuracy on the held-out features.
#
# The classifier is linear on purpose: it cannot build new features, so its accuracy says how
# much of the class information the encoder already made linearly readable. The held-out
# images here are `images.x_val`: pretraining never saw them (notebook 05 trained on
# `images.x_train` only).
#
# First the encoder. Notebook 05 saved its run (checkpoint, logs) under `runs/<preset>`; if it
# is not there, the next cell trains one now with the same call, and says so.

# %%
RUN_DIR = Path(os.environ.get("BT_RUN_DIR", Path("runs") / preset.name))
if (RUN_DIR / train.CHECKPOINT_NAME).exists():
    print(f"Using the run of notebook 05 in {RUN_DIR}.")
else:
    print(f"No checkpoint in {RUN_DIR}: training one now with the '{preset.name}' preset, "
          f"as notebook 05 does ({preset.epochs} epochs).")
    train.train(preset, images, out_dir=RUN_DIR, seed=0)
model, meta = train.load_run(RUN_DIR)
trained_with = train.preset_from_dict(meta["preset"])
print(f"checkpoint: epoch {meta['epoch']} of {trained_with.epochs}; {trained_with.describe()}")
if trained_with.replace(epochs=preset.epochs) != preset.replace(epochs=preset.epochs):
    print(f"NOTE: this run was trained with preset '{trained_with.name}', not '{preset.name}'.")
# The encoder takes the stored 32x32 images as they are, even when pretraining fed it smaller
# views (train.encoder_for_images explains why that helps).
encoder = model.encoder
projector = model.projector

# %% [markdown]
# ## 2. Every image counts
#
# The 2021 example batched its 10,000 test features with `drop_remainder=True` at batch 512.
# That option throws away the last, partial batch, so the reported accuracy was computed on
# fewer images than the test set holds:

# %%
# NBVAL_CHECK_OUTPUT
n_test, batch = 10_000, 512
kept = sum(int(b.shape[0])
           for b in tf.data.Dataset.range(n_test).batch(batch, drop_remainder=True))
print(f"drop_remainder=True scores {kept:,} of {n_test:,} images; "
      f"{n_test - kept} ({n_test} mod {batch} = {n_test % batch}) are never seen.")

# %% [markdown]
# Harmless-looking? The example shuffled the test set (a 1,000-image buffer, no seed) before
# batching, so *which* 272 images went unscored changed from one evaluation to the next: the
# test set itself changed. On data stored in order (an image folder is sorted by class) the
# dropped images would all come from the last class. `evaluate.extract_features` pads the
# last batch instead and returns one row per image; it also scales `uint8` images by 1/255
# exactly as training does and calls the encoder with `training=False`, so BatchNorm uses its
# running statistics rather than the batch's.

# %%
start = time.perf_counter()
h_train = evaluate.extract_features(encoder, images.x_train)   # (N, F)
h_val = evaluate.extract_features(encoder, images.x_val)       # (M, F)
assert len(h_train) == len(images.x_train) and len(h_val) == len(images.x_val)
print(f"backbone features: train {h_train.shape}, held-out {h_val.shape} "
      f"({time.perf_counter() - start:.0f} s)")

# %% [markdown]
# ## 3. A linear probe by hand
#
# Two details matter. **Standardise** each feature with the *training* mean and standard
# deviation (ReLU features have very different scales, and the optimiser's step size is the
# same for all of them). Then fit one `Dense` layer with a softmax and the cross-entropy loss.

# %%
mean, std = h_train.mean(axis=0), h_train.std(axis=0) + 1e-6
hand = keras.Sequential([keras.Input((h_train.shape[1],)),
                         keras.layers.Dense(images.num_classes, activation="softmax")])
hand.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
             metrics=["accuracy"])
hand.fit((h_train - mean) / std, images.y_train, batch_size=256, epochs=10, verbose=0)
_, hand_accuracy = hand.evaluate((h_val - mean) / std, images.y_val, verbose=0)
print(f"linear probe by hand (10 epochs of Adam): held-out accuracy {hand_accuracy:.1%}")

# %% [markdown]
# Why 10 epochs, and no weight penalty? No reason: those are guesses, and guessing them by
# looking at the held-out accuracy would turn the held-out set into a training set.
# `evaluate.linear_probe` decides them on a **validation split carved from the training
# features** (10 % of each class): it trains one softmax layer per L2 penalty (all at once, in
# one `Dense` layer), keeps each one's best epoch on that split (early stopping), picks the
# best penalty, and retrains it on all the training features. It also optimises in whitened
# coordinates, which changes neither the model nor the loss but converges in far fewer epochs
# on correlated features (see its docstring). The returned `probe` is a Keras model that
# contains the standardisation, so it applies to raw features; we check that.

# %%
probe = evaluate.linear_probe(h_train, images.y_train, h_val, images.y_val, seed=0)
print(probe.describe())
print("validation accuracy per L2 penalty:",
      ", ".join(f"{l2:g}: {acc:.1%}" for l2, acc in probe.val_accuracies.items()))
standardise = probe.probe.get_layer("standardise")
np.testing.assert_allclose(np.ravel(standardise.mean), mean, rtol=1e-4, atol=1e-4)
np.testing.assert_array_equal(probe.probe.predict(h_val, verbose=0).argmax(axis=1),
                              probe.predictions)
print(f"by hand {hand_accuracy:.1%} vs package {probe.accuracy:.1%} on the same "
      f"{len(h_val):,} held-out images")

# %% [markdown]
# ## 4. Backbone or projector?
#
# The loss of notebooks 02-03 acts on the projector's output `z`, not on the backbone's `h`.
# The projector is pushed to be *invariant* to the augmentations: colour, crop position, the
# flip. Whatever helps to undo them is squeezed out of `z`, but it can stay in `h`. That is why
# the paper (and SimCLR before it) throws the projector away after pretraining and probes `h`.
# The 2021 example attached its probe to the whole model, i.e. to `z`. Same probe, same split:

# %%
z_train = evaluate.apply_to_features(projector, h_train)      # (N, D)
z_val = evaluate.apply_to_features(projector, h_val)
probe_z = evaluate.linear_probe(z_train, images.y_train, z_val, images.y_val, seed=0)
print(f"backbone h ({h_train.shape[1]} features): {probe.accuracy:.1%}")
print(f"projector z ({z_train.shape[1]} features): {probe_z.accuracy:.1%} "
      f"({100 * (probe_z.accuracy - probe.accuracy):+.1f} points)")

# %% [markdown]
# ## 5. What did pretraining buy?
#
# An accuracy alone says little: a *random* convolutional network already computes useful
# features (edges, colours at several scales), and a linear classifier on raw pixels gets well
# above chance on CIFAR-10. The honest comparison is the same probe on the same split with
# (a) an encoder of the same architecture that was never trained (here: the very weights the
# run of notebook 05 started from) and (b) the raw pixels.

# %%
# The very weights notebook 05 started from (train.build_model with the run's seed), fed the
# images exactly as the trained encoder is.
random_encoder = train.build_model(trained_with, seed=int(meta.get("seed", 0))).encoder
r_train = evaluate.extract_features(random_encoder, images.x_train)
r_val = evaluate.extract_features(random_encoder, images.x_val)
probe_random = evaluate.linear_probe(r_train, images.y_train, r_val, images.y_val, seed=0)
print(f"random-init encoder: {probe_random.describe()}")

# %%
def pixels(x):
    """(N, 32, 32, 3) uint8 -> (N, 3072) float32 in [0, 1]."""
    return x.reshape(len(x), -1).astype(np.float32) / 255


probe_pixels = evaluate.linear_probe(pixels(images.x_train), images.y_train,
                                     pixels(images.x_val), images.y_val, seed=0)
print(f"raw pixels: {probe_pixels.describe()}")

# %%
chance = 1 / images.num_classes
comparison = {
    f"backbone h, trained ({h_train.shape[1]})": probe.accuracy,
    f"projector z, trained ({z_train.shape[1]})": probe_z.accuracy,
    f"backbone h, random init ({r_train.shape[1]})": probe_random.accuracy,
    f"raw pixels ({pixels(images.x_val[:1]).shape[1]})": probe_pixels.accuracy,
}
fig = plots.plot_probe_comparison(comparison, chance=chance,
                                  title=f"Linear probe, {len(h_val):,} held-out images "
                                        f"(preset '{preset.name}', epoch {meta['epoch']})")

# %% [markdown]
# Read the bars from the bottom up. Raw pixels and the random-init encoder are what you get
# for free; the trained backbone has to beat both by a clear margin for pretraining to have
# been worth it. The six epochs of the `teaching` preset (a few minutes on a laptop) already
# put the backbone well clear of both; the `full` preset (GPU, hundreds of epochs) is where
# Barlow Twins reaches the accuracies of the paper's CIFAR experiments. The gap between the projector bar and the
# backbone bar is what probing the wrong layer costs (SimCLR measured more than 10 points on
# ImageNet); expect it to grow as longer pretraining makes `z` more invariant.
#
# ## 6. The kNN monitor
#
# A linear probe needs a training run of its own. The cheaper monitor that self-supervised
# papers report during training (and that notebook 05 logged every epoch) is a weighted
# k-nearest-neighbour vote: take the `k` training features most cosine-similar to a held-out
# feature, and let each vote for its class with weight `exp(similarity / T)`. First on a toy
# example by hand, checked against `evaluate.knn_predict`:

# %%
# NBVAL_CHECK_OUTPUT
bank = np.array([[1.0, 0.0], [0.9, 0.3], [0.0, 1.0], [-0.2, 1.0], [-1.0, 0.1]], np.float32)
bank_labels = np.array([0, 0, 1, 1, 2])
query = np.array([[0.6, 0.8]], np.float32)
k, temperature = 3, 0.1
unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
similarity = (unit(query) @ unit(bank).T)[0]                    # cosine, (5,)
nearest = np.argsort(-similarity)[:k]
votes = np.zeros(3)
np.add.at(votes, bank_labels[nearest], np.exp(similarity[nearest] / temperature))
print("similarities:", np.round(similarity, 3))
print("nearest:", nearest, "labels:", bank_labels[nearest], "votes:", np.round(votes, 1))
package = evaluate.knn_predict(bank, bank_labels, query, k=k, temperature=temperature)
print("by hand:", int(votes.argmax()), "| package:", int(package[0]))

# %%
knn_trained = evaluate.knn_accuracy(h_train, images.y_train, h_val, images.y_val, k=200)
knn_random = evaluate.knn_accuracy(r_train, images.y_train, r_val, images.y_val, k=200)
print(f"kNN (k=200, T=0.1) on the backbone: trained {knn_trained:.1%}, "
      f"random init {knn_random:.1%} (linear probe: {probe.accuracy:.1%} and "
      f"{probe_random.accuracy:.1%})")

# %% [markdown]
# ## 7. Where the probe goes wrong
#
# The confusion matrix shows, for each true class (row), where its held-out images were put.
# On CIFAR-10 the usual suspects are cat vs dog and the vehicles among themselves (automobile
# vs truck, airplane vs ship): classes that share shapes and backgrounds.

# %%
fig = plots.plot_confusion_matrix(probe.confusion, images.class_names,
                                  title="Linear probe on the trained backbone")

# %% [markdown]
# ## 8. A map of the features
#
# t-SNE places points in 2-D so that neighbours in feature space stay neighbours on the map
# (`evaluate.tsne`, exact, in NumPy: about 10 s of CPU for a thousand points). The labels only
# colour the points, the map never sees them. Distances *between* clusters on a t-SNE map mean
# little; what to look at is whether a class forms its own clumps. Left the trained encoder,
# right the random one, on the same held-out images.

# %%
n_map = min(1000, len(h_val))
fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
for ax, feats, name in ((axes[0], h_val, "trained"), (axes[1], r_val, "random init")):
    points = evaluate.tsne(feats[:n_map], perplexity=30, seed=0)
    plots.plot_embedding_2d(points, images.y_val[:n_map], images.class_names, ax=ax,
                            title=f"t-SNE of {n_map:,} held-out backbone features, {name}")

# %% [markdown]
# ## 9. Nearest neighbours
#
# Retrieval is the most direct look at what "similar" means to the encoder: for a few
# held-out images (left), the training images with the most similar features, with the
# cosine similarity under each. Green frames share the query's class.

# %%
queries = np.random.default_rng(0).choice(len(h_val), 6, replace=False)
idx, sims = evaluate.nearest_neighbours(h_val[queries], h_train, k=8)
fig = plots.plot_retrieval_grid(images.x_val[queries], images.x_train[idx],
                                images.y_val[queries], images.y_train[idx],
                                images.class_names, similarities=sims,
                                title="Nearest training images in the trained backbone's space")

# %% [markdown]
# ## 10. Fewer labels
#
# The promise of self-supervised learning is that the labels are needed only at the end, and
# not many of them. `evaluate.label_efficiency` trains the same probe on a stratified 1 % and
# 10 % of the training labels (the 100 % point is the probe of section 3); the held-out images
# stay the same. Each curve is one encoder.

# %%
curves = {}
for name, (train_f, val_f, full) in {"trained backbone": (h_train, h_val, probe),
                                     "random-init backbone": (r_train, r_val, probe_random),
                                     "raw pixels": (pixels(images.x_train),
                                                    pixels(images.x_val), probe_pixels)}.items():
    few = evaluate.label_efficiency(train_f, images.y_train, val_f, images.y_val,
                                    fractions=(0.01, 0.1), seed=0)
    curves[name] = {f: r.accuracy for f, r in few.items()} | {1.0: full.accuracy}
    print(name, {f"{100 * f:g}%": f"{a:.1%}" for f, a in curves[name].items()})
fig = plots.plot_label_efficiency(curves, chance=chance,
                                  title=f"Held-out accuracy vs labelled training images "
                                        f"(100% = {len(h_train):,})")

# %% [markdown]
# ## Summary
#
# - Linear evaluation freezes the encoder, extracts features of **every** image (no dropped
#   partial batch), fits a softmax layer on standardised training features and reports
#   accuracy on held-out images. Every choice (penalty, epochs) is made on a split of the
#   training data, never on the held-out images.
# - Probe the **backbone**: the projector's output was made invariant to the augmentations
#   and lost information the classes need.
# - Always report the baselines with the same probe on the same split: a random-init encoder
#   of the same architecture and raw pixels. Pretraining is worth what it adds to them.
# - The kNN accuracy is a cheap monitor that moves with the linear probe; the confusion
#   matrix, the 2-D map and retrieval show *what* the features group together.
# - The same evaluation runs from a terminal on any run folder:
#   `python -m bt_helpers eval --checkpoint runs/teaching` (it prints a table and writes
#   `eval.json` next to the checkpoint).
#
# ## Exercises
#
# 1. Train the probe of section 3 by hand for 50 epochs instead of 10, and with an L2 penalty
#    (`kernel_regularizer=keras.regularizers.L2(1e-3)`). How close do you get to the package's
#    probe? Which settings would you have picked by looking at the held-out accuracy, and why
#    is that cheating?
# 2. Call `evaluate.linear_probe(..., precondition=False)` on the raw pixels and compare the
#    accuracy and the number of epochs with section 5. Why do correlated inputs slow plain
#    gradient descent down?
# 3. Vary `k` (1, 20, 200) and `temperature` (0.05, 0.1, 1.0) in `evaluate.knn_accuracy`. Which
#    matters more? What does a large temperature turn the weighted vote into?
# 4. Probe the output of each stage of the encoder (build a `keras.Model` from
#    `encoder.input` to a global-average-pooled `stage2_block2_out`, ...). Where in the network
#    is the class information most linearly readable?
