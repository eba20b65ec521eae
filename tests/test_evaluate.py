"""Tests for bt_helpers.evaluate: features, linear probe, kNN, 2-D maps, and their figures."""

import keras
import numpy as np
import pytest

from bt_helpers import evaluate as ev


def blobs(n, num_features=16, num_classes=4, separation=4.0, seed=0):
    """Gaussian class clusters: unit noise around class centres ``separation`` apart."""
    centres = np.random.default_rng(1234).normal(size=(num_classes, num_features))
    centres *= separation / np.sqrt(2 * num_features)   # pairwise distance ~ separation
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    features = centres[labels] + rng.normal(size=(n, num_features))
    return features.astype(np.float32), labels


def mean_colour_encoder(image_shape):
    """An encoder whose output is known: the mean of each channel, (batch, 3)."""
    inputs = keras.Input(image_shape)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))


# --- extract_features --------------------------------------------------------------------------

def test_extract_features_keeps_every_image_of_a_partial_batch():
    # The 2021 example batched 10,000 test images by 512 with drop_remainder=True.
    assert 10_000 % 512 == 272
    images = np.random.default_rng(0).integers(0, 256, (10_000, 2, 2, 3), dtype=np.uint8)
    features = ev.extract_features(mean_colour_encoder((2, 2, 3)), images, batch_size=512,
                                   verbose=False)
    assert features.shape == (10_000, 3) and features.dtype == np.float32
    # Row i is image i, scaled like training scales it (uint8 / 255), the last 272 included.
    np.testing.assert_allclose(features, images.mean(axis=(1, 2)) / 255, atol=1e-6)


def test_extract_features_float_input_and_batch_smaller_than_n():
    images = np.random.default_rng(1).random((7, 4, 4, 3)).astype(np.float32)
    features = ev.extract_features(mean_colour_encoder((4, 4, 3)), images, batch_size=3,
                                   verbose=False)
    np.testing.assert_allclose(features, images.mean(axis=(1, 2)), atol=1e-6)
    alone = ev.extract_features(mean_colour_encoder((4, 4, 3)), images[:2], batch_size=256,
                                verbose=False)
    np.testing.assert_allclose(alone, features[:2], atol=1e-6)


def test_extract_features_uses_inference_mode():
    # BatchNorm with training=True would normalise with the batch's statistics instead.
    inputs = keras.Input((2, 2, 3))
    x = keras.layers.BatchNormalization()(keras.layers.GlobalAveragePooling2D()(inputs))
    encoder = keras.Model(inputs, x)
    images = np.full((5, 2, 2, 3), 255, np.uint8)
    features = ev.extract_features(encoder, images, verbose=False)
    np.testing.assert_allclose(features, np.ones((5, 3)) / np.sqrt(1 + 1e-3), atol=1e-5)


def test_extract_features_traces_once_per_encoder_and_keeps_none_alive():
    import gc
    import weakref

    encoder = mean_colour_encoder((4, 4, 3))
    images = np.zeros((300, 4, 4, 3), np.uint8)
    ev.extract_features(encoder, images, batch_size=128, verbose=False)   # 128 + 128 + 44
    ev.extract_features(encoder, images[:10], batch_size=128, verbose=False)
    assert ev._inference_fn(encoder).experimental_get_tracing_count() == 2   # 128 and 10 rows
    alive = weakref.ref(encoder)
    del encoder
    gc.collect()
    assert alive() is None


@pytest.mark.parametrize("images, message", [
    (np.zeros((0, 4, 4, 3), np.uint8), "empty"),
    (np.zeros((4, 4, 3), np.uint8), "shape"),
    (np.full((2, 4, 4, 3), 255.0, np.float32), "max=255"),
    (np.zeros((2, 4, 4, 3), np.int32), "dtype int32"),
])
def test_extract_features_rejects_bad_images(images, message):
    with pytest.raises(ValueError, match=message):
        ev.extract_features(mean_colour_encoder((4, 4, 3)), images, verbose=False)


def test_extract_features_rejects_feature_maps():
    inputs = keras.Input((4, 4, 3))
    with pytest.raises(ValueError, match="GlobalAveragePooling2D"):
        ev.extract_features(keras.Model(inputs, inputs), np.zeros((2, 4, 4, 3), np.uint8),
                            verbose=False)


# --- linear probe ------------------------------------------------------------------------------

def test_linear_probe_separates_blobs_and_applies_to_raw_features():
    x_train, y_train = blobs(800, separation=6.0, seed=0)
    x_test, y_test = blobs(400, separation=6.0, seed=1)
    x_train, x_test = 50 + 10 * x_train, 50 + 10 * x_test   # raw scale: standardised inside
    result = ev.linear_probe(x_train, y_train, x_test, y_test, epochs=40, batch_size=256)
    assert result.accuracy > 0.95 and result.val_accuracy > 0.9
    assert result.l2 in ev.DEFAULT_L2_VALUES and 1 <= result.epochs <= 40
    assert set(result.val_accuracies) == set(ev.DEFAULT_L2_VALUES)
    # The returned probe holds the standardisation: it works on raw features.
    probabilities = result.probe.predict(x_test, verbose=0)
    assert probabilities.shape == (400, 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), result.predictions)
    # Confusion matrix and per-class accuracy agree with the predictions.
    assert result.confusion.sum() == 400
    np.testing.assert_array_equal(result.confusion, ev.confusion_matrix(y_test,
                                                                        result.predictions, 4))
    assert np.trace(result.confusion) / 400 == pytest.approx(result.accuracy)
    for c in range(4):
        np.testing.assert_allclose(result.per_class_accuracy[c],
                                   np.mean(result.predictions[y_test == c] == c))


def test_linear_probe_is_at_chance_on_random_labels():
    x_train, _ = blobs(1000, seed=0)
    x_test, _ = blobs(1000, seed=1)
    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 4, 1000), rng.integers(0, 4, 1000)
    result = ev.linear_probe(x_train, y_train, x_test, y_test, epochs=20, batch_size=256)
    # Chance is 25%; 1,000 test labels give a standard deviation of 1.4 points.
    assert abs(result.accuracy - 0.25) < 0.06


def test_linear_probe_is_deterministic_by_seed():
    x_train, y_train = blobs(600, separation=1.5, seed=0)
    x_test, y_test = blobs(300, separation=1.5, seed=1)
    kwargs = dict(epochs=15, batch_size=128, l2_values=(0.0, 1e-2))
    a = ev.linear_probe(x_train, y_train, x_test, y_test, seed=3, **kwargs)
    b = ev.linear_probe(x_train, y_train, x_test, y_test, seed=3, **kwargs)
    assert (a.accuracy, a.l2, a.epochs, a.val_accuracies) == (b.accuracy, b.l2, b.epochs,
                                                              b.val_accuracies)
    for wa, wb in zip(a.probe.get_weights(), b.probe.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    c = ev.linear_probe(x_train, y_train, x_test, y_test, seed=4, **kwargs)
    assert not all(np.array_equal(wa, wc) for wa, wc in zip(a.probe.get_weights(),
                                                            c.probe.get_weights()))


@pytest.mark.parametrize("optimizer, learning_rate", [("adam", 1e-2), ("sgd", 0.1)])
def test_linear_probe_heads_train_as_if_alone(optimizer, learning_rate):
    # Several penalties are trained at once; each head must follow its own trajectory.
    x, y = blobs(300, separation=1.5, seed=0)
    fit = dict(x_val=None, y_val=None, epochs=3, patience=1, seed=0)
    heads = dict(batch_size=64, learning_rate=learning_rate, optimizer=optimizer,
                 penalty_weights=np.linspace(0.5, 2, 16))
    together = ev._SoftmaxHeads(16, 4, (0.0, 0.1), **heads)
    kernels, biases, _, _ = together.fit(x, y, **fit)
    alone_kernels, alone_biases, _, _ = ev._SoftmaxHeads(16, 4, (0.1,), **heads).fit(x, y, **fit)
    np.testing.assert_allclose(kernels[1], alone_kernels[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(biases[1], alone_biases[0], rtol=1e-4, atol=1e-6)
    assert not np.allclose(kernels[0], kernels[1])
    # fit() starts again from zero: a second call gives the same weights.
    again, _, _, _ = together.fit(x, y, **fit)
    np.testing.assert_array_equal(again, kernels)


@pytest.mark.parametrize("n", [300, 40])   # more rows than features (eigh), fewer (thin SVD)
def test_whitening_basis_matches_its_definition(n):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, 60)) @ rng.normal(size=(60, 60))           # correlated features
    z = ((z - z.mean(axis=0)) / z.std(axis=0)).astype(np.float32)
    eigenvalues = np.maximum(np.linalg.eigvalsh(z.T.astype(np.float64) @ z / n), 0)
    delta = 1e-3 * eigenvalues.mean()
    basis, scale = ev._whitening_basis(z, shrinkage=1e-3)
    assert basis.shape == (60, min(n, 60)) and scale.shape == (min(n, 60),)
    # The whitened coordinates are uncorrelated, with variance lambda / (lambda + delta).
    u = z @ (basis * scale)
    expected = eigenvalues / (eigenvalues + delta)
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(u.T @ u / n))[-min(n, 60):],
                               np.sort(expected)[-min(n, 60):], atol=2e-3)
    np.testing.assert_allclose(u.T @ u / n, np.diag(np.diag(u.T @ u / n)), atol=2e-3)
    # Every training row is reproduced from its coordinates (no direction is lost).
    np.testing.assert_allclose((u / scale) @ basis.T, z, atol=1e-3)


def test_preconditioning_changes_the_path_not_the_problem():
    # Strongly correlated features: in 15 epochs whitened Adam gets much closer to the
    # minimum of the same penalised loss than plain Adam does.
    rng = np.random.default_rng(0)
    x, y = blobs(1200, num_features=8, separation=3.0, seed=0)
    x = x @ (rng.normal(size=(8, 40)) + 3.0) + 0.3 * rng.normal(size=(1200, 40))
    x = x.astype(np.float32)
    l2 = 1e-3

    def objective(result):   # mean cross-entropy + l2 * sum(W ** 2), on the training data
        p = result.probe.predict(x, verbose=0)[np.arange(len(y)), y]
        kernel = result.probe.get_layer("softmax").get_weights()[0]
        return -np.mean(np.log(p)) + l2 * np.sum(kernel ** 2)

    kwargs = dict(l2_values=(l2,), val_fraction=0)
    best = objective(ev.linear_probe(x, y, x, y, epochs=200, **kwargs))
    fast = objective(ev.linear_probe(x, y, x, y, epochs=15, **kwargs))
    slow = objective(ev.linear_probe(x, y, x, y, epochs=15, precondition=False, **kwargs))
    assert best <= fast + 1e-3 and fast - best < 0.25 * (slow - best)


def test_linear_probe_without_validation_uses_the_given_penalty():
    x_train, y_train = blobs(200, seed=0)
    result = ev.linear_probe(x_train, y_train, x_train, y_train, val_fraction=0,
                             l2_values=(1e-3,), epochs=5)
    assert (result.l2, result.epochs) == (1e-3, 5) and np.isnan(result.val_accuracy)
    with pytest.raises(ValueError, match="single value"):
        ev.linear_probe(x_train, y_train, x_train, y_train, val_fraction=0)


def test_stratified_subset_and_label_efficiency():
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    idx = ev.stratified_subset(labels, 0.1, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[idx]), [10, 5, 3, 2])
    assert len(np.unique(idx)) == len(idx)
    np.testing.assert_array_equal(np.bincount(labels[ev.stratified_subset(labels, 0.001)]),
                                  [1, 1, 1, 1])
    with pytest.raises(ValueError, match="fraction"):
        ev.stratified_subset(labels, 0.0)
    x_train, y_train = blobs(800, separation=3.0, seed=0)
    x_test, y_test = blobs(400, separation=3.0, seed=1)
    results = ev.label_efficiency(x_train, y_train, x_test, y_test, fractions=(0.05, 1.0),
                                  epochs=20, batch_size=256)
    assert list(results) == [0.05, 1.0]
    assert results[1.0].accuracy > 0.8
    assert results[1.0].accuracy >= results[0.05].accuracy - 0.02


# --- kNN -------------------------------------------------------------------------------------

def knn_reference(train, train_labels, test, k, temperature, num_classes):
    """Brute force, one query at a time."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    predictions = []
    for q in test:
        sims = train @ (q / np.linalg.norm(q))
        top = np.argsort(-sims)[:k]
        votes = np.zeros(num_classes)
        np.add.at(votes, train_labels[top], np.exp(sims[top] / temperature))
        predictions.append(np.argmax(votes))
    return np.array(predictions)


@pytest.mark.parametrize("k, temperature", [(1, 0.1), (20, 0.1), (20, 1.0), (1000, 0.5)])
def test_knn_matches_brute_force(k, temperature):
    x_train, y_train = blobs(300, separation=1.0, seed=0)
    x_test, y_test = blobs(70, separation=1.0, seed=1)
    expected = knn_reference(x_train, y_train, x_test, min(k, 300), temperature, 4)
    predictions = ev.knn_predict(x_train, y_train, x_test, k=k, temperature=temperature,
                                 batch_size=32)   # 70 queries: a partial last batch
    np.testing.assert_array_equal(predictions, expected)
    accuracy = ev.knn_accuracy(x_train, y_train, x_test, y_test, k=k, temperature=temperature)
    assert accuracy == pytest.approx(np.mean(expected == y_test))


def test_knn_is_scale_invariant_and_separates_blobs():
    x_train, y_train = blobs(400, separation=6.0, seed=0)
    x_test, y_test = blobs(200, separation=6.0, seed=1)
    accuracy = ev.knn_accuracy(x_train, y_train, x_test, y_test, k=20)
    assert accuracy > 0.95
    assert ev.knn_accuracy(7 * x_train, y_train, 0.1 * x_test, y_test, k=20) == accuracy


def test_nearest_neighbours_matches_argsort():
    x_bank, _ = blobs(100, seed=0)
    x_query, _ = blobs(9, seed=1)
    indices, sims = ev.nearest_neighbours(x_query, x_bank, k=5, batch_size=4)
    bank = x_bank / np.linalg.norm(x_bank, axis=1, keepdims=True)
    query = x_query / np.linalg.norm(x_query, axis=1, keepdims=True)
    full = query @ bank.T
    np.testing.assert_array_equal(indices, np.argsort(-full, axis=1)[:, :5])
    np.testing.assert_allclose(sims, np.sort(full, axis=1)[:, ::-1][:, :5], atol=1e-5)


# --- errors ------------------------------------------------------------------------------------

def _probe(*args, **kwargs):
    return ev.linear_probe(*args, epochs=1, **kwargs)


def _knn(*args, **kwargs):
    return ev.knn_accuracy(*args, k=3, **kwargs)


@pytest.mark.parametrize("evaluate", [_probe, _knn])
def test_clear_errors(evaluate):
    x, y = blobs(40, seed=0)
    with pytest.raises(ValueError,
                       match=r"`train_features` has 40 rows but `train_labels` has 39"):
        evaluate(x, y[:39], x, y)
    with pytest.raises(ValueError, match=r"`test_features` has 40 rows but `test_labels` has 41"):
        evaluate(x, y, x, np.append(y, 0))
    bad = y.copy()
    bad[5] = 7
    with pytest.raises(ValueError, match=r"`test_labels` must be in \[0, 3\].*received 7"):
        evaluate(x, y, x, bad, num_classes=4)
    with pytest.raises(ValueError, match=r"received -1 at index 5"):
        evaluate(x, np.where(np.arange(40) == 5, -1, y), x, y)
    with pytest.raises(ValueError, match="`train_features` is empty"):
        evaluate(x[:0], y[:0], x, y)
    with pytest.raises(ValueError, match="2-D array"):
        evaluate(x.reshape(40, 4, 4), y, x, y)
    nan = x.copy()
    nan[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"`test_features` contains NaN.*1 of 40 rows"):
        evaluate(x, y, nan, y)
    with pytest.raises(ValueError, match="16 features per row but `test_features` has 15"):
        evaluate(x, y, x[:, :15], y)


def test_keras_style_column_labels_are_accepted():
    x, y = blobs(80, seed=0)
    assert ev.knn_accuracy(x, y[:, None], x, y[:, None], k=1) == 1.0


# --- 2-D maps ----------------------------------------------------------------------------------

def test_pca_matches_svd():
    x, _ = blobs(200, seed=0)
    y = ev.pca(x, 3)
    centred = x - x.mean(axis=0)
    variances = np.linalg.svd(centred, compute_uv=False) ** 2
    np.testing.assert_allclose(np.sum(y ** 2, axis=0), variances[:3], rtol=1e-4)
    np.testing.assert_allclose(np.abs(np.corrcoef(y.T)), np.eye(3), atol=1e-4)


def test_tsne_keeps_clusters_apart():
    x, y = blobs(150, num_features=20, num_classes=3, separation=12.0, seed=0)
    points = ev.tsne(x, perplexity=15, n_iter=500, seed=0)
    assert points.shape == (150, 2) and np.isfinite(points).all()
    # Every point's nearest neighbour in the map has its class.
    d = np.sum((points[:, None] - points[None]) ** 2, axis=-1)
    np.fill_diagonal(d, np.inf)
    assert np.mean(y[d.argmin(axis=1)] == y) == 1.0
    np.testing.assert_array_equal(points, ev.tsne(x, perplexity=15, n_iter=500, seed=0))


# --- figures (bt_helpers.plots, evaluation section) --------------------------------------------

def test_evaluation_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bt_helpers import plots

    confusion = np.array([[8, 2, 0], [1, 9, 0], [0, 5, 5]])
    fig = plots.plot_confusion_matrix(confusion, ["a", "b", "c"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[:3] == ["80", "20", "0"] and "accuracy 73.3%" in fig.axes[0].get_title()
    fig = plots.plot_embedding_2d(np.random.default_rng(0).normal(size=(30, 2)),
                                  np.arange(30) % 3, ["a", "b", "c"])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b", "c"]
    images = np.zeros((2, 3, 8, 8, 3), np.uint8)
    fig = plots.plot_retrieval_grid(images[:, 0], images, [0, 1], [[0, 1, 0], [1, 1, 1]],
                                    ["a", "b"], similarities=np.ones((2, 3)))
    assert len(fig.axes) == 8 and fig.axes[0].get_ylabel() == "a\n2/3 same"
    fig = plots.plot_label_efficiency({"x": {0.01: 0.3, 0.1: 0.5, 1.0: 0.6}}, chance=0.1)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1%", "10%", "100%"]
    fig = plots.plot_probe_comparison({"backbone": 0.6, "pixels": 0.4}, chance=0.1)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["backbone", "pixels"]
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion_matrix(np.zeros((2, 3)))
    plt.close("all")


# --- a run folder and the `eval` command -------------------------------------------------------

def test_eval_command_on_a_run_folder(tmp_path, capsys, isolated_data_env):
    import dataclasses
    import json

    from bt_helpers import cli, train
    from bt_helpers.config import get_preset
    from bt_helpers.data import SYNTHETIC_CLASS_NAMES

    # A run folder as `train` leaves it after an epoch, without spending the epoch.
    preset = get_preset("ci")
    model = train.build_model(preset, seed=0)
    optimizer = keras.optimizers.SGD()
    optimizer.build(model.trainable_variables)
    train.save_checkpoint(tmp_path / train.CHECKPOINT_NAME, model, optimizer,
                          dict(preset=dataclasses.asdict(preset), seed=0, epoch=1))
    assert cli.main(["eval", "--checkpoint", str(tmp_path), "--probe", "knn", "--k", "50"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1 of 2 (preset 'ci')" in out and "kNN k=50" in out and "linear" not in out
    saved = json.loads((tmp_path / ev.EVAL_JSON).read_text())
    assert saved["eval_split"] == "test" and saved["n_eval"] == 1000 and saved["n_train"] == 512
    assert 0 <= saved["knn"]["accuracy"] <= 1 and "linear" not in saved
    # A second probe on the same checkpoint is merged into the same file.
    assert cli.main(["eval", "--checkpoint", str(tmp_path / train.CHECKPOINT_NAME),
                     "--probe", "linear"]) == 0
    saved = json.loads((tmp_path / ev.EVAL_JSON).read_text())
    assert set(saved["linear"]["per_class_accuracy"]) == set(SYNTHETIC_CLASS_NAMES)
    assert saved["knn"]["k"] == 50
    # No checkpoint: one clear line, status 2.
    assert cli.main(["eval", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "No checkpoint.npz" in capsys.readouterr().err

