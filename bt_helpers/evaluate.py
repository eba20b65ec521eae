"""Frozen-feature evaluation: feature extraction, linear probe, kNN monitor (notebook 06).

Self-supervised pretraining never sees a label, so it is judged afterwards by how useful its
frozen features are to a simple classifier:

* :func:`extract_features` runs an encoder over *every* image (no augmentation, no dropped
  partial batch: the 2021 example's ``drop_remainder=True`` at batch 512 silently lost 272 of
  the 10,000 test images); :func:`apply_to_features` runs the projector on those features;
* :func:`linear_probe` standardises the features with training statistics and trains one
  softmax ``Dense`` layer in Keras, choosing its L2 penalty and its number of epochs on a
  validation split carved from the training features (never on the test features);
* :func:`knn_accuracy` / :func:`knn_predict` is the label-cheap monitor of the SSL literature
  (InstDisc, solo-learn): cosine similarity, the k=200 nearest training features vote with
  weights ``exp(similarity / temperature)``;
* :func:`label_efficiency` re-runs the probe on stratified 1 % / 10 % / 100 % subsets of the
  labels; :func:`nearest_neighbours`, :func:`pca` and :func:`tsne` feed the figures in
  ``bt_helpers.plots``;
* :func:`evaluate_run` scores the encoder of a training run folder (``python -m bt_helpers
  eval``) and writes ``eval.json`` beside its checkpoint.

Features are numpy arrays of shape ``(N, F)`` and labels integer arrays of shape ``(N,)``
with values in ``[0, num_classes)``. Every random choice takes a ``seed``; on a CPU the same
seed gives the same numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import weakref
from typing import Optional, Sequence

import numpy as np

#: L2 penalties the linear probe tries by default (on standardised features, mean loss).
DEFAULT_L2_VALUES = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
#: Small training sets have few steps per epoch: the probe's default epoch budget and
#: patience grow so that it may take at least this many steps, and waits this many.
MIN_STEPS = 300
MIN_PATIENCE_STEPS = 100
#: ``precondition="auto"`` whitens up to this many features (an F x F eigendecomposition on
#: the CPU: 3,072 raw pixels take ~10 s, 8,192 would take minutes).
MAX_PRECONDITION_FEATURES = 4096


# --- input checks ------------------------------------------------------------------------------

def _check_features(features, name: str) -> np.ndarray:
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D array (num_examples, num_features); received "
                         f"shape {features.shape}. Flatten images with x.reshape(len(x), -1) or "
                         f"pool feature maps before probing.")
    if features.shape[0] == 0:
        raise ValueError(f"`{name}` is empty (shape {features.shape}); at least one example "
                         f"is needed.")
    if features.shape[1] == 0:
        raise ValueError(f"`{name}` has no features (shape {features.shape}).")
    if not np.issubdtype(features.dtype, np.number) or np.issubdtype(features.dtype,
                                                                     np.complexfloating):
        raise ValueError(f"`{name}` must hold real numbers; received dtype {features.dtype}.")
    features = features.astype(np.float32, copy=False)
    if not np.isfinite(features).all():
        bad = int(np.count_nonzero(~np.isfinite(features).all(axis=1)))
        raise ValueError(f"`{name}` contains NaN or infinite values ({bad} of "
                         f"{features.shape[0]} rows). A diverged encoder produces them; check "
                         f"the training loss before evaluating.")
    return features


def _check_labels(labels, name: str, n: int, features_name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:     # Keras' (N, 1) CIFAR-10 labels
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D array of integer class ids; received shape "
                         f"{labels.shape}. Use labels.argmax(-1) for one-hot labels.")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.floating) or np.any(labels != np.round(labels)):
            raise ValueError(f"`{name}` must hold integer class ids; received dtype "
                             f"{labels.dtype}.")
    if len(labels) != n:
        raise ValueError(f"`{features_name}` has {n} rows but `{name}` has {len(labels)} "
                         f"labels; they must have the same length.")
    return labels.astype(np.int64)


def _resolve_num_classes(num_classes: Optional[int], **labels) -> int:
    """Checks every label is in ``[0, num_classes)``; infers ``num_classes`` when None."""
    if num_classes is None:
        num_classes = 1 + max(int(y.max()) for y in labels.values())
    num_classes = int(num_classes)
    if num_classes < 2:
        raise ValueError(f"Need at least 2 classes; received num_classes={num_classes}.")
    for name, y in labels.items():
        bad = (y < 0) | (y >= num_classes)
        if bad.any():
            raise ValueError(f"`{name}` must be in [0, {num_classes - 1}] (num_classes="
                             f"{num_classes}); received {y[bad][0]} at index "
                             f"{int(np.argmax(bad))}.")
    return num_classes


# --- compiled pieces ---------------------------------------------------------------------------

_INFERENCE = weakref.WeakKeyDictionary()   # model -> its compiled inference call
_COMPILED = {}                             # name -> module-level tf.function


def _inference_fn(model):
    """``model(x, training=False)`` compiled once per model (traced again only for new shapes).

    The compiled function refers to the model through a weak reference, so the cache does
    not keep models alive.
    """
    import tensorflow as tf

    try:
        return _INFERENCE[model]
    except (KeyError, TypeError):
        pass
    ref = weakref.ref(model) if _weakrefable(model) else (lambda: model)
    fn = tf.function(lambda x: ref()(x, training=False), reduce_retracing=True)
    if _weakrefable(model):
        _INFERENCE[model] = fn
    return fn


def _weakrefable(obj) -> bool:
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False


@contextlib.contextmanager
def _quiet_retracing():
    """Silence TensorFlow's "N out of the last M calls triggered retracing" warning: each new
    encoder (a kNN monitor builds one per epoch) is traced once, which is expected here."""
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _compiled(name: str):
    """Module-level tf.functions for the neighbour searches, built on first use. The bank is
    an argument, not a captured constant, so new features do not mean a new function."""
    if not _COMPILED:
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def top_k_cosine(queries, bank, k):
            sims = tf.matmul(queries, bank, transpose_b=True)              # (B, N)
            return tf.math.top_k(sims, k=k)                                # (B, k) twice

        @tf.function(reduce_retracing=True)
        def knn_vote(queries, bank, labels, k, temperature, num_classes):
            sims = tf.matmul(queries, bank, transpose_b=True)              # (B, N)
            top_sims, top_idx = tf.math.top_k(sims, k=k)                   # (B, k)
            weights = tf.exp(top_sims / temperature)                       # (B, k)
            votes = tf.one_hot(tf.gather(labels, top_idx), num_classes)    # (B, k, C)
            votes = tf.reduce_sum(votes * weights[..., None], axis=1)      # (B, C)
            return tf.argmax(votes, axis=-1)                               # (B,)

        _COMPILED.update(top_k_cosine=top_k_cosine, knn_vote=knn_vote)
    return _COMPILED[name]


# --- feature extraction ------------------------------------------------------------------------

def extract_features(encoder, images, batch_size: int = 256, verbose: bool = True) -> np.ndarray:
    """Runs a frozen encoder over every image, in inference mode and without augmentation.

    The images are scaled the way training scales them (uint8 / 255 -> float32 in [0, 1]),
    one batch at a time so that 50,000 images never sit in memory as float32. The last,
    partial batch is padded to the full batch size (so the compiled call is traced once) and
    the padding is dropped from the output: there is one feature row per image.

    Args:
        encoder: a Keras model (or callable) mapping ``(batch, height, width, channels)``
            float images in [0, 1] to ``(batch, F)`` features, e.g. the backbone returned by
            ``bt_helpers.models``. It is called with ``training=False`` (BatchNorm uses its
            moving statistics).
        images: ``(N, height, width, channels)`` uint8 in [0, 255] or float in [0, 1].
        batch_size: images per forward pass. Defaults to 256.
        verbose: show a tqdm progress bar (works in notebooks too). Defaults to True.

    Returns:
        float32 numpy array of shape ``(N, F)``.

    Raises:
        ValueError: for images that are not a non-empty 4-D batch, float images outside
            [0, 1], or an encoder whose output is not ``(batch, F)``.
    """
    import tensorflow as tf
    from tqdm.auto import tqdm

    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"`images` must have shape (N, height, width, channels); received "
                         f"shape {images.shape}.")
    n = images.shape[0]
    if n == 0:
        raise ValueError(f"`images` is empty (shape {images.shape}); nothing to encode.")
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be a positive integer; received {batch_size}.")
    if images.dtype == np.uint8:
        scale = np.float32(1 / 255)
    elif np.issubdtype(images.dtype, np.floating):
        lo, hi = float(images.min()), float(images.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"Expected float images in [0, 1]; received min={lo:.4g}, "
                             f"max={hi:.4g}. Pass uint8 images or divide by 255.")
        scale = None
    else:
        raise ValueError(f"`images` must be uint8 in [0, 255] or float in [0, 1]; received "
                         f"dtype {images.dtype}.")

    batch_size = min(int(batch_size), n)
    forward = _inference_fn(encoder)
    chunks = []
    with _quiet_retracing(), tqdm(total=n, desc="features", unit="img",
                                  disable=not verbose) as bar:
        for start in range(0, n, batch_size):
            batch = images[start:start + batch_size]
            count = len(batch)
            batch = batch.astype(np.float32) * scale if scale is not None else (
                batch.astype(np.float32, copy=False))
            if count < batch_size:                     # pad: one trace, every image kept
                pad = np.zeros((batch_size - count,) + batch.shape[1:], np.float32)
                batch = np.concatenate([batch, pad])
            out = forward(tf.constant(batch))
            if isinstance(out, (list, tuple, dict)) or len(out.shape) != 2:
                shape = getattr(out, "shape", type(out).__name__)
                raise ValueError(f"The encoder must return one (batch, F) tensor; it returned "
                                 f"{shape}. Use the backbone (with global pooling) or add a "
                                 f"GlobalAveragePooling2D layer.")
            chunks.append(np.asarray(out[:count], dtype=np.float32))
            bar.update(count)
    features = np.concatenate(chunks)
    assert features.shape[0] == n, (features.shape, n)
    return features


def apply_to_features(model, features, batch_size: int = 1024) -> np.ndarray:
    """Runs a frozen ``(batch, F) -> (batch, D)`` model (e.g. the projector) over every row.

    Used to get projector outputs ``z`` from backbone features ``h`` without running the
    encoder again. Inference mode (``training=False``), no row dropped.

    Args:
        model: a Keras model or callable taking ``(batch, F)`` float32.
        features: ``(N, F)``.
        batch_size: rows per call. Defaults to 1024.

    Returns:
        float32 numpy array of shape ``(N, D)``.
    """
    import tensorflow as tf

    x = _check_features(features, "features")
    forward = _inference_fn(model)
    with _quiet_retracing():
        out = [np.asarray(forward(tf.constant(x[s:s + batch_size])), dtype=np.float32)
               for s in range(0, len(x), batch_size)]
    return np.concatenate(out)


# --- splits ------------------------------------------------------------------------------------

def stratified_subset(labels, fraction: float, seed: int = 0) -> np.ndarray:
    """Indices of a class-balanced random subset holding ``fraction`` of each class.

    Every class keeps ``round(fraction * count)`` examples, and at least one.

    Args:
        labels: ``(N,)`` integer class ids.
        fraction: in (0, 1].
        seed: random seed. Defaults to 0.

    Returns:
        Sorted int64 indices into ``labels``.
    """
    labels = np.asarray(labels)
    if not 0 < fraction <= 1:
        raise ValueError(f"`fraction` must be in (0, 1]; received {fraction}.")
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        take = max(1, int(round(fraction * len(idx))))
        keep.append(rng.permutation(idx)[:take])
    return np.sort(np.concatenate(keep)).astype(np.int64)


def _stratified_split(labels: np.ndarray, val_fraction: float, rng) -> tuple:
    """(fit_idx, val_idx): ``val_fraction`` of each class to validation, at least one example
    of each class stays on the fitting side."""
    fit, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = min(int(round(val_fraction * len(idx))), len(idx) - 1)
        if len(idx) >= 2:
            n_val = max(n_val, 1)
        val.append(idx[:n_val])
        fit.append(idx[n_val:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(val))


# --- linear probe ------------------------------------------------------------------------------

@dataclasses.dataclass
class ProbeResult:
    """What :func:`linear_probe` measured and fitted.

    Attributes:
        accuracy: top-1 accuracy on the test features, in [0, 1].
        per_class_accuracy: ``(num_classes,)`` recall of each class (NaN for a class absent
            from the test labels).
        confusion: ``(num_classes, num_classes)`` int64 counts, rows = true class,
            columns = predicted class.
        predictions: ``(N_test,)`` predicted class ids.
        l2: the chosen L2 penalty.
        epochs: the chosen number of epochs (best validation epoch).
        val_accuracy: validation accuracy of the chosen setting (NaN without validation).
        val_accuracies: ``{l2: best validation accuracy}`` for every penalty tried.
        train_accuracy: accuracy of the final probe on the features it was trained on.
        probe: a Keras model ``(batch, F)`` raw features -> ``(batch, num_classes)``
            probabilities; it contains the standardisation (a ``Normalization`` layer) and
            the softmax ``Dense`` layer.
        seconds: wall time of the whole fit.
    """

    accuracy: float
    per_class_accuracy: np.ndarray
    confusion: np.ndarray
    predictions: np.ndarray
    l2: float
    epochs: int
    val_accuracy: float
    val_accuracies: dict
    train_accuracy: float
    probe: object
    seconds: float

    def describe(self) -> str:
        """One line: accuracy on the evaluation features, and the chosen setting."""
        return (f"linear probe: accuracy {self.accuracy:.2%} on {len(self.predictions):,} "
                f"held-out features (validation {self.val_accuracy:.2%}, train "
                f"{self.train_accuracy:.2%}); l2={self.l2:g}, {self.epochs} epochs, "
                f"{self.seconds:.1f} s")

    def __repr__(self) -> str:
        return f"ProbeResult({self.describe()})"


def _standardiser(x: np.ndarray) -> tuple:
    """Mean and variance per feature; a constant feature gets variance 1 (it maps to 0)."""
    mean = x.mean(axis=0, dtype=np.float64)
    var = x.var(axis=0, dtype=np.float64)
    var = np.where(var > 1e-12 * max(1.0, float(np.abs(mean).max()) ** 2), var, 1.0)
    return mean.astype(np.float32), var.astype(np.float32)


def _whitening_basis(z: np.ndarray, shrinkage: float = 1e-3, max_rows: int = 10_000,
                     seed: int = 0) -> tuple:
    """PCA whitening of standardised features ``z`` (N, F): ``(basis (F, K), scale (K,))``.

    ``u = z @ (basis * scale)`` are the coordinates of ``z`` along the covariance's
    eigenvectors divided by ``sqrt(eigenvalue + delta)``, so they are uncorrelated with
    variance ``eigenvalue / (eigenvalue + delta)`` (about 1); ``delta = shrinkage * mean
    eigenvalue`` keeps the scale finite for redundant features. ``basis * scale**2 @ basis.T``
    is ``(cov + delta I)^-1`` on the span of the basis. The covariance is estimated on at most
    ``max_rows`` rows: a preconditioner need not be exact. When all N < F rows are used, every
    row lies in the span of the top N right singular vectors, and K = N (a thin SVD, N^2 F
    instead of F^3); otherwise K = F.
    """
    n_all = len(z)
    if n_all > max_rows:
        z = z[np.random.default_rng(seed).choice(n_all, max_rows, replace=False)]
    n, f = z.shape
    if n < f and n == n_all:
        _, singular, vt = np.linalg.svd(z, full_matrices=False)         # vt: (N, F)
        eigenvalues, basis = singular ** 2 / n, vt.T                     # (N,), (F, N)
        delta = shrinkage * max(float(eigenvalues.sum()) / f, 1e-12)
    else:
        eigenvalues, basis = np.linalg.eigh(z.T @ z / np.float32(n))    # (F,), (F, F)
        eigenvalues = np.maximum(eigenvalues, 0)
        delta = shrinkage * max(float(eigenvalues.mean()), 1e-12)
    scale = 1 / np.sqrt(eigenvalues + delta)
    return basis.astype(np.float32), scale.astype(np.float32)


class _SoftmaxHeads:
    """One softmax layer per L2 penalty, trained at once (a ``Dense`` with R x C outputs).

    The heads share the inputs but nothing else: the loss is a sum of per-head losses, so
    with Adam (a per-parameter update) every head follows exactly the trajectory it would
    follow alone, while the features are read once per step instead of R times. The epoch
    is one compiled call (a ``tf.range`` loop over the batches), traced once per instance:
    :meth:`fit` resets the weights and the optimizer and can be called again (the refit).

    The penalty is ``l2 * sum_k penalty_weights[k] * sum_c V[k, c] ** 2`` for a kernel V of
    shape (K, C): plain L2 with weights 1; with whitened inputs ``u = z @ (basis * scale)``
    and weights ``scale ** 2`` it is exactly ``l2 * sum(W ** 2)`` of the kernel
    ``W = basis @ (scale * V)`` that acts on ``z`` (see :func:`linear_probe`).

    Two optimizers. ``"adam"`` adds the penalty to the loss. ``"sgd"`` (momentum) takes
    gradient steps on the cross-entropy alone and applies the penalty exactly after each
    step, ``V <- V / (1 + 2 lr' l2 w_k)`` with ``lr' = lr / (1 - momentum)`` (a proximal step,
    stable for any penalty weight; with ``lr'`` its fixed point is the minimum of the
    penalised loss). On whitened inputs every direction has the same curvature, which is
    what plain gradient descent needs; Adam, which scales each coordinate's step instead,
    gains little there.
    """

    def __init__(self, num_inputs: int, num_classes: int, l2_values, batch_size: int,
                 learning_rate: float, penalty_weights: Optional[np.ndarray] = None,
                 optimizer: str = "adam", momentum: float = 0.9):
        import keras
        import tensorflow as tf

        k, r, c = num_inputs, len(l2_values), num_classes
        self.shape = (k, r, c)
        self.batch_size = batch_size
        self.dense = keras.layers.Dense(r * c, kernel_initializer="zeros",
                                        bias_initializer="zeros")
        self.dense.build((None, k))
        weights = (np.ones(k, np.float32) if penalty_weights is None
                   else np.asarray(penalty_weights, np.float32))       # (K,)
        if optimizer == "sgd":
            self.optimizer = keras.optimizers.SGD(learning_rate, momentum=momentum)
            step = learning_rate / (1 - momentum)
            shrink = tf.constant((1 / (1 + 2 * step * np.outer(
                weights, np.repeat(np.asarray(l2_values, np.float32), c)))).astype(np.float32))
            l2 = tf.zeros(r)                                            # penalty: the shrink
        elif optimizer == "adam":
            self.optimizer = keras.optimizers.Adam(learning_rate)
            shrink = None
            l2 = tf.constant(np.asarray(l2_values, np.float32))         # (R,)
        else:
            raise ValueError(f"optimizer must be 'sgd' or 'adam'; received {optimizer!r}.")
        self.optimizer.build(self.dense.trainable_variables)
        weights = tf.constant(weights)
        dense, optimizer = self.dense, self.optimizer
        spec = [tf.TensorSpec([None, k], tf.float32), tf.TensorSpec([None], tf.int32),
                tf.TensorSpec([None], tf.int32)]

        def train_step(x, y):                                         # (B, K), (B,)
            with tf.GradientTape() as tape:
                logits = tf.reshape(dense(x), (-1, r, c))              # (B, R, C)
                labels = tf.broadcast_to(y[:, None], tf.shape(logits)[:2])
                ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)  # (B, R)
                squares = tf.reduce_sum(tf.reshape(tf.square(dense.kernel), (k, r, c)),
                                        axis=2)                          # (K, R)
                penalty = tf.reduce_sum(l2 * tf.linalg.matvec(squares, weights,
                                                              transpose_a=True))
                loss = tf.reduce_sum(tf.reduce_mean(ce, axis=0)) + penalty
            grads = tape.gradient(loss, dense.trainable_variables)
            optimizer.apply_gradients(zip(grads, dense.trainable_variables))
            if shrink is not None:
                dense.kernel.assign(dense.kernel * shrink)             # exact L2 step

        # An explicit while_loop (no AutoGraph, so no dependence on reading this source).
        @tf.function(input_signature=spec, autograph=False)
        def run_epoch(x_all, y_all, order):
            steps = (tf.shape(order)[0] + batch_size - 1) // batch_size

            def body(step):
                idx = order[step * batch_size:(step + 1) * batch_size]
                train_step(tf.gather(x_all, idx), tf.gather(y_all, idx))
                return (step + 1,)

            tf.while_loop(lambda step: step < steps, body, (tf.constant(0),))

        @tf.function(input_signature=spec[:1])
        def predict(x):
            return tf.argmax(tf.reshape(dense(x), (-1, r, c)), axis=-1, output_type=tf.int32)

        self._run_epoch, self._predict = run_epoch, predict

    def reset(self) -> None:
        """Zero weights, optimizer moments and step count (the learning rate is kept)."""
        for v in self.dense.trainable_variables:
            v.assign(np.zeros(v.shape, np.float32))
        for v in self.optimizer.variables:
            if len(v.shape):                                            # moments, not scalars
                v.assign(np.zeros(v.shape, np.float32))
        self.optimizer.iterations.assign(0)

    def fit(self, x_fit, y_fit, x_val, y_val, epochs: int, patience: int, seed: int,
            desc: str = "probe", verbose: bool = False):
        """Trains from zero; keeps each head's weights of its best validation epoch.

        ``x_fit`` and ``x_val`` have ``num_inputs`` columns (the whitened features when
        the caller preconditions; computed once by the caller, as that costs N F K).

        Early stopping: after ``patience`` epochs in which the best validation accuracy over
        all heads did not rise. Without validation data every head trains ``epochs`` epochs.

        Returns:
            ``(kernels (R, K, C), biases (R, C), best_epoch (R,), best_val_acc (R,))``.
        """
        import tensorflow as tf
        from tqdm.auto import tqdm

        f, r, c = self.shape
        self.reset()
        n = len(x_fit)
        x_all, y_all = tf.constant(x_fit), tf.constant(y_fit.astype(np.int32))
        has_val = x_val is not None and len(x_val) > 0
        if has_val:
            x_val_t = tf.constant(x_val)
        rng = np.random.default_rng(seed)
        best_acc = np.full(r, -1.0)
        best_epoch = np.zeros(r, np.int64)
        best_kernel = np.zeros((f, r * c), np.float32)
        best_bias = np.zeros(r * c, np.float32)
        since_best = 0
        with tqdm(range(1, epochs + 1), desc=desc, unit="epoch", disable=not verbose) as bar:
            for epoch in bar:
                self._run_epoch(x_all, y_all, tf.constant(rng.permutation(n).astype(np.int32)))
                if not has_val:
                    continue
                acc = (self._predict(x_val_t).numpy() == y_val[:, None]).mean(axis=0)  # (R,)
                overall_before = best_acc.max()
                improved = acc > best_acc
                if improved.any():
                    cols = np.repeat(improved, c)
                    best_kernel[:, cols] = self.dense.kernel.numpy()[:, cols]
                    best_bias[cols] = self.dense.bias.numpy()[cols]
                    best_epoch[improved] = epoch
                    best_acc[improved] = acc[improved]
                since_best = 0 if best_acc.max() > overall_before else since_best + 1
                bar.set_postfix(val_acc=f"{best_acc.max():.3f}")
                if since_best >= patience:
                    break
        if not has_val:
            best_kernel, best_bias = self.dense.kernel.numpy(), self.dense.bias.numpy()
            best_epoch[:] = epochs
            best_acc[:] = np.nan
        kernels = best_kernel.reshape(f, r, c).transpose(1, 0, 2)       # (R, K, C)
        return kernels, best_bias.reshape(r, c), best_epoch, best_acc


def _build_probe(mean, var, kernel, bias):
    import keras

    f, c = kernel.shape
    probe = keras.Sequential([
        keras.Input((f,)),
        keras.layers.Normalization(mean=mean, variance=var, name="standardise"),
        keras.layers.Dense(c, activation="softmax", name="softmax"),
    ], name="linear_probe")
    probe.get_layer("softmax").set_weights([kernel, bias])
    return probe


def linear_probe(train_features, train_labels, test_features, test_labels,
                 num_classes: Optional[int] = None, epochs: Optional[int] = None,
                 batch_size: Optional[int] = None, learning_rate: Optional[float] = None,
                 l2_values: Sequence[float] = DEFAULT_L2_VALUES,
                 val_fraction: float = 0.1, patience: Optional[int] = None, refit: bool = True,
                 precondition="auto", seed: int = 0,
                 verbose: bool = False) -> ProbeResult:
    """Trains a softmax classifier on frozen features: the standard linear evaluation.

    1. Features are standardised with the training features' mean and standard deviation.
    2. A stratified ``val_fraction`` of the *training* features is held out. One softmax
       ``Dense`` layer per penalty in ``l2_values`` is trained (all at once, see below) and
       the penalty and epoch with the best validation accuracy are kept (early stopping after
       ``patience`` epochs without improvement; ties go to the larger penalty). The test
       features are never used for a choice.
    3. With ``refit`` the chosen setting is trained again on all training features for the
       chosen number of epochs, so that no label is wasted (this matters at 1 % of labels).

    Speed. All penalties train together in one ``Dense`` layer with ``len(l2_values) *
    num_classes`` outputs (their losses add up, and the optimizers update each weight on its
    own, so each head moves exactly as it would alone). Features of a network are strongly
    correlated, which makes gradient descent crawl along the directions in which the loss is
    flat. With ``precondition`` (the default) the probe is trained on whitened inputs
    ``u = z B S`` (``B`` the eigenvectors of the training features' covariance, ``S`` one
    over the square root of its slightly shrunk eigenvalues) with a kernel ``V``, by SGD with
    momentum and an exact (proximal) L2 step weighted so that the penalty equals
    ``l2 * sum(W ** 2)`` for the kernel ``W = B S V`` that acts on the standardised features
    ``z``. The model and the loss are the same; only the path to their minimum is shorter.
    Without it (by default above 4,096 features), Adam trains ``W`` directly.

    Args:
        train_features: ``(N, F)`` features of the labelled training images.
        train_labels: ``(N,)`` integer class ids.
        test_features: ``(M, F)`` features of the held-out images.
        test_labels: ``(M,)`` integer class ids.
        num_classes: number of classes; inferred as ``max(label) + 1`` when None.
        epochs: maximum epochs. Defaults to 100, or more on small data, so that at least
            ``MIN_STEPS`` (300) optimizer steps are allowed.
        batch_size: examples per step. Defaults to 4096 with ``precondition``, else 1024.
        learning_rate: constant learning rate. Defaults to 0.3 (SGD, momentum 0.9) with
            ``precondition``, else 1e-3 (Adam).
        l2_values: L2 penalties to choose from; the loss is ``mean cross-entropy +
            l2 * sum(kernel ** 2)``. Defaults to ``DEFAULT_L2_VALUES``.
        val_fraction: fraction of each class held out for the choice; 0 trains one probe with
            the single value in ``l2_values`` for exactly ``epochs`` epochs. Defaults to 0.1.
        patience: epochs without a better validation accuracy before stopping. Defaults to
            10, or more on small data, so that at least ``MIN_PATIENCE_STEPS`` (100) steps
            are waited for.
        refit: retrain the chosen setting on all training features. Defaults to True.
        precondition: optimise in whitened coordinates (see above): True, False, or
            ``"auto"`` (True up to ``MAX_PRECONDITION_FEATURES`` features). Defaults to
            ``"auto"``.
        seed: seed of the split and the batch order. Defaults to 0.
        verbose: show progress bars. Defaults to False.

    Returns:
        A :class:`ProbeResult` (accuracy, per-class accuracy, confusion matrix, the chosen
        penalty and epochs, and the fitted Keras probe that applies to raw features).

    Raises:
        ValueError: for empty or non-2-D features, NaN features, mismatched lengths or
            widths, labels outside ``[0, num_classes)`` or bad settings.
    """
    start = time.perf_counter()
    x_train = _check_features(train_features, "train_features")
    x_test = _check_features(test_features, "test_features")
    y_train = _check_labels(train_labels, "train_labels", len(x_train), "train_features")
    y_test = _check_labels(test_labels, "test_labels", len(x_test), "test_features")
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"`train_features` has {x_train.shape[1]} features per row but "
                         f"`test_features` has {x_test.shape[1]}; extract both with the same "
                         f"encoder.")
    num_classes = _resolve_num_classes(num_classes, train_labels=y_train, test_labels=y_test)
    l2_values = tuple(float(v) for v in np.atleast_1d(l2_values))
    if not l2_values or min(l2_values) < 0:
        raise ValueError(f"`l2_values` must be non-empty and >= 0; received {l2_values}.")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"`val_fraction` must be in [0, 1); received {val_fraction}.")
    if val_fraction == 0 and len(l2_values) > 1:
        raise ValueError(f"With val_fraction=0 nothing can choose among l2_values={l2_values}; "
                         f"pass a single value, e.g. l2_values=(1e-4,).")
    if any(v is not None and v < 1 for v in (epochs, batch_size, patience)):
        raise ValueError(f"`epochs`, `batch_size` and `patience` must be >= 1; received "
                         f"epochs={epochs}, batch_size={batch_size}, patience={patience}.")

    mean, var = _standardiser(x_train)
    z_train = (x_train - mean) / np.sqrt(var)                          # (N, F)
    z_test = (x_test - mean) / np.sqrt(var)                            # (M, F)
    rng = np.random.default_rng(seed)
    if val_fraction > 0:
        fit_idx, val_idx = _stratified_split(y_train, val_fraction, rng)
    else:
        fit_idx, val_idx = np.arange(len(y_train)), np.arange(0)
    if precondition == "auto":
        precondition = x_train.shape[1] <= MAX_PRECONDITION_FEATURES
    if precondition:
        basis, scale = _whitening_basis(z_train, seed=seed)             # (F, K), (K,)
        u_train = z_train @ (basis * scale)                             # (N, K) whitened
        heads = _SoftmaxHeads(len(scale), num_classes, l2_values, int(batch_size or 4096),
                              learning_rate or 0.3, penalty_weights=scale ** 2,
                              optimizer="sgd")
    else:
        u_train = z_train
        heads = _SoftmaxHeads(x_train.shape[1], num_classes, l2_values,
                              int(batch_size or 1024), learning_rate or 1e-3, optimizer="adam")
    steps_per_epoch = -(-len(fit_idx) // heads.batch_size)
    if epochs is None:
        epochs = max(100, -(-MIN_STEPS // steps_per_epoch))
    if patience is None:
        patience = max(10, -(-MIN_PATIENCE_STEPS // steps_per_epoch))
    kernels, biases, best_epoch, best_acc = heads.fit(
        u_train[fit_idx], y_train[fit_idx], u_train[val_idx], y_train[val_idx], epochs=epochs,
        patience=patience, seed=int(rng.integers(2**31)), desc="probe", verbose=verbose)
    if len(val_idx):
        # Best accuracy; ties go to the larger penalty (the simpler model).
        chosen = max(range(len(l2_values)), key=lambda i: (best_acc[i], l2_values[i]))
    else:
        chosen = 0
    l2, chosen_epochs = l2_values[chosen], int(best_epoch[chosen])
    kernel, bias = kernels[chosen], biases[chosen]
    if refit and len(val_idx):
        # Same compiled step (no new trace): every head retrains, the chosen one is kept.
        kernels, biases, _, _ = heads.fit(u_train, y_train, None, None, epochs=chosen_epochs,
                                          patience=patience, seed=int(rng.integers(2**31)),
                                          desc="refit", verbose=verbose)
        kernel, bias = kernels[chosen], biases[chosen]
    if precondition:                                                    # V -> W, acts on z
        kernel = basis @ (scale[:, None] * kernel)                      # (F, C)

    predictions = np.argmax(z_test @ kernel + bias, axis=1)
    train_accuracy = float(np.mean(np.argmax(z_train @ kernel + bias, axis=1) == y_train))
    confusion = confusion_matrix(y_test, predictions, num_classes)
    return ProbeResult(
        accuracy=float(np.mean(predictions == y_test)),
        per_class_accuracy=_per_class_accuracy(confusion),
        confusion=confusion,
        predictions=predictions,
        l2=l2,
        epochs=chosen_epochs,
        val_accuracy=float(best_acc[chosen]) if len(val_idx) else float("nan"),
        val_accuracies={v: float(a) for v, a in zip(l2_values, best_acc)},
        train_accuracy=train_accuracy,
        probe=_build_probe(mean, var, kernel, bias),
        seconds=time.perf_counter() - start,
    )


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts; rows = true class, columns = predicted."""
    labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes ** 2)
    return flat.reshape(num_classes, num_classes)


def _per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / totals, np.nan)


def label_efficiency(train_features, train_labels, test_features, test_labels,
                     fractions: Sequence[float] = (0.01, 0.1, 1.0), seed: int = 0,
                     num_classes: Optional[int] = None, **probe_kwargs) -> dict:
    """Linear-probe accuracy when only a fraction of the training labels is available.

    For each fraction a stratified subset of the labelled training features is drawn
    (:func:`stratified_subset`, nested draws are not guaranteed) and :func:`linear_probe`
    is trained on it; the test features are always the same.

    Args:
        train_features, train_labels, test_features, test_labels: as in :func:`linear_probe`.
        fractions: fractions of labels in (0, 1]. Defaults to (0.01, 0.1, 1.0).
        seed: seed of the subsets and the probes. Defaults to 0.
        num_classes: inferred from all labels when None.
        **probe_kwargs: passed on to :func:`linear_probe`.

    Returns:
        ``{fraction: ProbeResult}`` in the order of ``fractions``.
    """
    x_train = _check_features(train_features, "train_features")
    y_train = _check_labels(train_labels, "train_labels", len(x_train), "train_features")
    y_test = np.asarray(test_labels)
    if num_classes is None:
        num_classes = 1 + max(int(y_train.max()), int(np.max(y_test)) if y_test.size else 0)
    results = {}
    for fraction in fractions:
        idx = stratified_subset(y_train, fraction, seed=seed)
        results[fraction] = linear_probe(x_train[idx], y_train[idx], test_features, test_labels,
                                         num_classes=num_classes, seed=seed, **probe_kwargs)
    return results


# --- nearest neighbours ------------------------------------------------------------------------

def _l2_normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest_neighbours(query_features, bank_features, k: int = 8, batch_size: int = 1024):
    """The ``k`` most cosine-similar rows of ``bank_features`` for each query row.

    Args:
        query_features: ``(M, F)``.
        bank_features: ``(N, F)``.
        k: neighbours per query; at most N. Defaults to 8.
        batch_size: queries per matrix product (memory ~ batch_size x N floats).
            Defaults to 1024.

    Returns:
        ``(indices, similarities)``, both ``(M, k)``, most similar first.
    """
    import tensorflow as tf

    queries = _check_features(query_features, "query_features")
    bank = _check_features(bank_features, "bank_features")
    if queries.shape[1] != bank.shape[1]:
        raise ValueError(f"`query_features` has {queries.shape[1]} features per row but "
                         f"`bank_features` has {bank.shape[1]}.")
    if not 1 <= k <= len(bank):
        raise ValueError(f"`k` must be in [1, {len(bank)}] (the bank size); received k={k}.")
    bank_t = tf.constant(_l2_normalise(bank))                          # (N, F)
    top_k = _compiled("top_k_cosine")
    queries = _l2_normalise(queries)
    indices, sims = [], []
    for start in range(0, len(queries), batch_size):
        values, idx = top_k(tf.constant(queries[start:start + batch_size]), bank_t, int(k))
        indices.append(idx.numpy())
        sims.append(values.numpy())
    return np.concatenate(indices).astype(np.int64), np.concatenate(sims)


def knn_predict(train_features, train_labels, test_features, k: int = 200,
                temperature: float = 0.1, num_classes: Optional[int] = None,
                batch_size: int = 1024) -> np.ndarray:
    """Weighted k-nearest-neighbour class predictions (cosine similarity).

    Each test feature takes its ``k`` most cosine-similar training features; neighbour ``j``
    votes for its label with weight ``exp(s_j / temperature)``; the class with the largest
    total wins (Wu et al. 2018, "InstDisc"; the monitor in solo-learn).

    Args:
        train_features: ``(N, F)`` the labelled bank.
        train_labels: ``(N,)`` integer class ids.
        test_features: ``(M, F)`` queries.
        k: neighbours per query; values above N use all N. Defaults to 200.
        temperature: vote temperature, > 0. Defaults to 0.1.
        num_classes: inferred as ``max(train_labels) + 1`` when None.
        batch_size: queries per matrix product. Defaults to 1024.

    Returns:
        ``(M,)`` int64 predicted class ids.
    """
    import tensorflow as tf

    bank = _check_features(train_features, "train_features")
    queries = _check_features(test_features, "test_features")
    labels = _check_labels(train_labels, "train_labels", len(bank), "train_features")
    if bank.shape[1] != queries.shape[1]:
        raise ValueError(f"`train_features` has {bank.shape[1]} features per row but "
                         f"`test_features` has {queries.shape[1]}; extract both with the same "
                         f"encoder.")
    num_classes = _resolve_num_classes(num_classes, train_labels=labels)
    if k < 1:
        raise ValueError(f"`k` must be >= 1; received k={k}.")
    if not temperature > 0:
        raise ValueError(f"`temperature` must be > 0; received temperature={temperature}.")
    k = min(int(k), len(bank))
    bank_t = tf.constant(_l2_normalise(bank))                          # (N, F)
    labels_t = tf.constant(labels.astype(np.int32))                    # (N,)
    temperature_t = tf.constant(float(temperature), tf.float32)
    vote = _compiled("knn_vote")
    queries = _l2_normalise(queries)
    out = [vote(tf.constant(queries[s:s + batch_size]), bank_t, labels_t, k, temperature_t,
                num_classes).numpy()
           for s in range(0, len(queries), batch_size)]
    return np.concatenate(out).astype(np.int64)


def knn_accuracy(train_features, train_labels, test_features, test_labels, k: int = 200,
                 temperature: float = 0.1, num_classes: Optional[int] = None,
                 batch_size: int = 1024) -> float:
    """Top-1 accuracy of :func:`knn_predict` on labelled test features.

    Args:
        train_features, train_labels, test_features, k, temperature, batch_size: as in
            :func:`knn_predict`.
        test_labels: ``(M,)`` integer class ids.
        num_classes: inferred from all labels when None.

    Returns:
        Accuracy in [0, 1].
    """
    x_train = _check_features(train_features, "train_features")
    x_test = _check_features(test_features, "test_features")
    y_train = _check_labels(train_labels, "train_labels", len(x_train), "train_features")
    y_test = _check_labels(test_labels, "test_labels", len(x_test), "test_features")
    num_classes = _resolve_num_classes(num_classes, train_labels=y_train, test_labels=y_test)
    predictions = knn_predict(x_train, y_train, x_test, k=k, temperature=temperature,
                              num_classes=num_classes, batch_size=batch_size)
    return float(np.mean(predictions == y_test))


# --- 2-D maps ----------------------------------------------------------------------------------

def pca(features, n_components: int = 2) -> np.ndarray:
    """Projects centred features on their top principal directions.

    Args:
        features: ``(N, F)``.
        n_components: output dimension, at most ``min(N, F)``. Defaults to 2.

    Returns:
        float32 ``(N, n_components)``, columns sorted by decreasing variance, each column's
        sign fixed so that its largest-magnitude entry is positive (deterministic).
    """
    x = _check_features(features, "features").astype(np.float64)
    if not 1 <= n_components <= min(x.shape):
        raise ValueError(f"`n_components` must be in [1, {min(x.shape)}]; received "
                         f"{n_components}.")
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    y = x @ vt[:n_components].T                                        # (N, n_components)
    signs = np.sign(y[np.argmax(np.abs(y), axis=0), np.arange(n_components)])
    return (y * np.where(signs == 0, 1, signs)).astype(np.float32)


def _conditional_probabilities(sq_dists: np.ndarray, perplexity: float) -> np.ndarray:
    """Row-wise Gaussian affinities whose entropy matches ``log(perplexity)`` (bisection)."""
    n = sq_dists.shape[0]
    target = np.log(perplexity)
    beta_lo = np.zeros(n)
    beta_hi = np.full(n, np.inf)
    beta = np.ones(n)
    d = sq_dists.copy()
    np.fill_diagonal(d, np.inf)
    d -= d.min(axis=1, keepdims=True)          # stabilises exp without changing each row's p
    for _ in range(64):
        p = np.exp(-d * beta[:, None])                                 # (N, N)
        total = p.sum(axis=1)
        entropy = np.log(total) + beta * (p * np.where(np.isinf(d), 0, d)).sum(axis=1) / total
        too_flat = entropy > target                                    # raise beta
        beta_lo = np.where(too_flat, beta, beta_lo)
        beta_hi = np.where(too_flat, beta_hi, beta)
        beta = np.where(np.isinf(beta_hi), beta * 2, (beta_lo + beta_hi) / 2)
        if np.abs(entropy - target).max() < 1e-5:
            break
    return p / total[:, None]


def tsne(features, perplexity: float = 30.0, n_iter: int = 750, seed: int = 0,
         pca_dims: int = 50, learning_rate: Optional[float] = None) -> np.ndarray:
    """A 2-D t-SNE map (van der Maaten & Hinton, 2008), exact, in numpy.

    Exact t-SNE costs O(N^2) memory and time per iteration: fine for the thousand or two
    points a figure shows (1,000 points: about 10 s of CPU time), not for 50,000. Features are
    first reduced to ``pca_dims`` dimensions with :func:`pca`; the map starts from the
    (scaled) first two principal components, so it is deterministic and global structure is
    kept.
    The optimisation follows the paper: early exaggeration 12 for 250 iterations, momentum
    0.5 then 0.8, per-coordinate gains.

    Args:
        features: ``(N, F)``, N > 3 * perplexity is advisable.
        perplexity: effective number of neighbours. Defaults to 30.
        n_iter: gradient steps. Defaults to 750.
        seed: seed of the tiny jitter added to the start. Defaults to 0.
        pca_dims: dimensions kept before computing affinities. Defaults to 50.
        learning_rate: step size; ``max(N / 12, 50)`` when None (the "auto" rule).

    Returns:
        float32 ``(N, 2)``.
    """
    x = _check_features(features, "features")
    n = len(x)
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 points; received {n}.")
    perplexity = float(min(perplexity, (n - 1) / 3))
    x = pca(x, min(pca_dims, *x.shape)).astype(np.float64)
    sq = np.sum(x ** 2, axis=1)
    sq_dists = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)  # (N, N)
    p = _conditional_probabilities(sq_dists, perplexity)
    p = np.maximum((p + p.T) / (2 * n), 1e-12)                         # symmetric joint P
    rng = np.random.default_rng(seed)
    y = x[:, :2] / np.std(x[:, 0]) * 1e-4 + rng.normal(scale=1e-6, size=(n, 2))
    learning_rate = max(n / 12, 50) if learning_rate is None else learning_rate
    update = np.zeros_like(y)
    gains = np.ones_like(y)
    p_early, p_late = (12.0 * p).astype(np.float32), p.astype(np.float32)   # exaggeration 12
    num = np.empty((n, n), np.float32)                                  # N x N work arrays,
    w = np.empty((n, n), np.float32)                                    # float32, in place
    for it in range(n_iter):
        y32 = y.astype(np.float32)
        np.subtract.outer(y32[:, 0], y32[:, 0], out=num)
        np.square(num, out=num)
        np.subtract.outer(y32[:, 1], y32[:, 1], out=w)
        np.square(w, out=w)
        num += w
        num += 1
        np.reciprocal(num, out=num)                                     # 1 / (1 + |yi - yj|^2)
        np.fill_diagonal(num, 0)
        np.multiply(num, np.float32(1 / num.sum(dtype=np.float64)), out=w)   # Q
        np.subtract(p_early if it < 250 else p_late, w, out=w)
        w *= num                                                        # (P - Q) / (1 + d^2)
        grad = 4 * (w.sum(axis=1, dtype=np.float64)[:, None] * y - w @ y32)  # (N, 2)
        momentum = 0.5 if it < 250 else 0.8
        same = np.sign(grad) == np.sign(update)
        gains = np.maximum(np.where(same, gains * 0.8, gains + 0.2), 0.01)
        update = momentum * update - learning_rate * gains * grad
        y = y + update
        y -= y.mean(axis=0)
    return y.astype(np.float32)


# --- a training run ----------------------------------------------------------------------------

#: File :func:`evaluate_run` writes into the run folder.
EVAL_JSON = "eval.json"
PROBES = ("linear", "knn", "all")


def evaluate_run(run_dir, probe: str = "all", images=None, data_dir=None,
                 source: Optional[str] = None, data_seed: Optional[int] = None,
                 features: str = "backbone",
                 batch_size: int = 256, k: int = 200, seed: int = 0, write: bool = True,
                 verbose: bool = True) -> dict:
    """Scores the encoder saved in a run folder with a linear probe and/or kNN.

    The last complete checkpoint of ``run_dir`` (see ``bt_helpers.train.load_run``) gives the
    encoder (and projector) and the run's preset. The images are loaded as the run loaded
    them (``load_data(preset=..., seed=<the run's seed>)``): the probe and the kNN bank use the
    training split's labels, and they are scored on the test split when the data has one,
    else on the held-out validation split that pretraining never saw.

    Args:
        run_dir: a folder written by ``bt_helpers.train.train`` (holds ``checkpoint.npz``);
            the path of the checkpoint file itself is accepted too.
        probe: ``"linear"``, ``"knn"`` or ``"all"``. Defaults to ``"all"``.
        images: a ``bt_helpers.data.ImageData`` to use instead of loading. Defaults to None.
        data_dir, source: passed to ``load_data`` (default: the preset's source and
            ``BT_DATA_DIR``).
        data_seed: seed of the train / validation split. Defaults to the run's seed, which
            ``python -m bt_helpers train`` also uses for its split (``bt_helpers.start``
            splits with seed 0).
        features: ``"backbone"`` (the encoder's output, the standard) or ``"projector"``
            (the embeddings the loss saw). Defaults to ``"backbone"``.
        batch_size: images per forward pass. Defaults to 256.
        k: kNN neighbours. Defaults to 200.
        seed: seed of the probe. Defaults to 0.
        write: merge the results into ``run_dir/eval.json``. Defaults to True.
        verbose: progress bars. Defaults to True.

    Returns:
        A JSON-ready dict: ``run``, ``epoch``, ``preset``, ``data``, ``features``,
        ``feature_dim``, ``eval_split``, ``n_train``, ``n_eval``, and ``linear`` (accuracy,
        per-class accuracy, chosen ``l2`` and ``epochs``, ...) and/or ``knn`` (accuracy, k,
        temperature); ``json_path`` when written.
    """
    import json
    import os
    from pathlib import Path

    from bt_helpers import train as train_lib
    from bt_helpers.data import load_data

    if probe not in PROBES:
        raise ValueError(f"`probe` must be one of {PROBES}; received {probe!r}.")
    if features not in ("backbone", "projector"):
        raise ValueError(f"`features` must be 'backbone' or 'projector'; received {features!r}.")
    run_dir = Path(run_dir)
    if run_dir.is_file():
        run_dir = run_dir.parent
    model, meta = train_lib.load_run(run_dir)
    preset = train_lib.preset_from_dict(meta["preset"])
    if images is None:
        data_seed = int(meta.get("seed", 0)) if data_seed is None else data_seed
        images = load_data(source=source, data_dir=data_dir, preset=preset, seed=data_seed)
    if images.x_test is not None and len(images.x_test):
        split, x_eval, y_eval = "test", images.x_test, images.y_test
    elif len(images.x_val):
        split, x_eval, y_eval = "val", images.x_val, images.y_val
    else:
        raise ValueError("The data has neither a test split nor a validation split to score "
                         "on; load it with n_val > 0.")
    # load_run's encoder takes the stored images at their own size (train.encoder_for_images).
    encoder = model.encoder
    f_train = extract_features(encoder, images.x_train, batch_size, verbose)
    f_eval = extract_features(encoder, x_eval, batch_size, verbose)
    if features == "projector":
        f_train = apply_to_features(model.projector, f_train)
        f_eval = apply_to_features(model.projector, f_eval)
    names = list(images.class_names)
    results = {
        "run": str(run_dir), "epoch": int(meta.get("epoch", 0)),
        "epochs": int(preset.epochs), "preset": preset.name, "data": images.describe(),
        "features": features, "feature_dim": int(f_train.shape[1]), "eval_split": split,
        "n_train": int(len(f_train)), "n_eval": int(len(f_eval)),
    }
    if probe in ("linear", "all"):
        r = linear_probe(f_train, images.y_train, f_eval, y_eval,
                         num_classes=images.num_classes, seed=seed, verbose=verbose)
        results["linear"] = {
            "accuracy": r.accuracy, "val_accuracy": r.val_accuracy, "l2": r.l2,
            "epochs": r.epochs, "train_accuracy": r.train_accuracy,
            "per_class_accuracy": {n: float(a) for n, a in zip(names, r.per_class_accuracy)},
            "seconds": round(r.seconds, 2)}
    if probe in ("knn", "all"):
        results["knn"] = {
            "accuracy": knn_accuracy(f_train, images.y_train, f_eval, y_eval, k=k,
                                     num_classes=images.num_classes),
            "k": int(min(k, len(f_train))), "temperature": 0.1}
    if write:
        path = run_dir / EVAL_JSON
        merged = {}
        if path.exists():
            try:
                merged = json.loads(path.read_text())
            except ValueError:
                merged = {}
        same = {key: merged.get(key) for key in ("epoch", "data", "features", "eval_split")}
        if same != {key: results[key] for key in same}:
            merged = {}                         # another checkpoint or data: start afresh
        merged.update(results)
        tmp = path.with_name(f".{EVAL_JSON}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(merged, indent=2) + "\n")
        os.replace(tmp, path)
        results["json_path"] = str(path)
    return results


def format_results(results: dict) -> str:
    """The small table ``python -m bt_helpers eval`` prints, from :func:`evaluate_run`'s dict."""
    lines = [f"run {results['run']}: epoch {results['epoch']} of {results['epochs']} "
             f"(preset '{results['preset']}')",
             results["data"],
             f"{results['features']} features ({results['feature_dim']} per image); probes "
             f"trained on {results['n_train']:,} train images, scored on {results['n_eval']:,} "
             f"{results['eval_split']} images",
             "",
             f"{'probe':<16}{'accuracy':>10}  details"]
    if "linear" in results:
        r = results["linear"]
        lines.append(f"{'linear':<16}{r['accuracy']:>10.2%}  l2={r['l2']:g}, {r['epochs']} "
                     f"epochs (its validation carve-out {r['val_accuracy']:.2%}, train "
                     f"{r['train_accuracy']:.2%})")
    if "knn" in results:
        r = results["knn"]
        lines.append(f"{'kNN k=' + str(r['k']):<16}{r['accuracy']:>10.2%}  cosine, "
                     f"temperature {r['temperature']:g}")
    if "json_path" in results:
        lines += ["", f"wrote {results['json_path']}"]
    return "\n".join(lines)
