"""The cross-correlation matrix and the Barlow Twins loss (taught in notebooks 02 and 03).

Barlow Twins (Zbontar, Jing, Misra, LeCun and Deny, 2021, "Barlow Twins: Self-Supervised
Learning via Redundancy Reduction", arXiv:2103.03230) embeds two augmented views of the same
``N`` images into ``z_a`` and ``z_b``, both ``(N, D)``, and pushes the ``(D, D)``
cross-correlation matrix of the two views towards the identity::

    z_norm = (z - mean_over_batch(z)) / sqrt(var_over_batch(z) + eps)   # per feature
    c      = z_a_norm^T z_b_norm / N                                    # (D, D)
    loss   = sum_i (1 - c_ii)^2  +  lambda_offdiag * sum_{i != j} c_ij^2
             '---- invariance ---'  '------- redundancy reduction -------'

What this module holds:

* :func:`normalize` -- each feature standardised over the batch, exactly as a BatchNorm layer
  without scale and offset (``affine=False`` in the official code): mean and *biased* variance
  over the batch, ``eps`` added to the variance (default ``1e-5``, PyTorch's BatchNorm value
  used by the official implementation). The 2021 Keras example had no ``eps`` and returns NaN
  as soon as one feature is constant over the batch (a dead ReLU unit, say).
* :func:`cross_correlation` -- ``c``.
* :func:`off_diagonal` -- the ``D * (D - 1)`` off-diagonal entries of a square matrix.
* :func:`barlow_twins_terms` -- the invariance term, the (weighted) redundancy term and ``c``.
* :func:`barlow_twins_loss` -- their sum, a scalar; :class:`BarlowTwinsLoss` is the
  ``keras.losses.Loss`` wrapper.
* :func:`cross_replica_sum`, :func:`num_replicas`, :func:`scale_for_replicas` -- the pieces that
  make the loss use the global batch under ``tf.distribute`` (below).
* :func:`toy_views` -- two synthetic views with a chosen noise level and feature redundancy,
  whose ``c`` is known in closed form (for the notebooks and the correlation explorer).

Everything is computed in float32 whatever the input dtype (bfloat16 or float16 embeddings from
a mixed-precision network are cast first): the statistics and the ``D x D`` sums need it.

**Cost.** The diagonal ``c_ii`` is computed from the normalised embeddings in ``O(N D)`` and
the redundancy term as ``sum(c^2) - sum(c_ii^2)``, so no masked copy of ``c`` (the 2021
example's ``set_diag``) is ever made; ``1 / N`` is folded into the ``(N, D)`` operand, not the
``(D, D)`` result. :func:`barlow_twins_terms` (which returns ``c``) does one ``(D, N) x (N, D)``
matmul, ``N D^2`` multiply-adds, and its backward pass two more. :func:`barlow_twins_loss`
needs only ``sum(c^2)``, which equals ``sum((z_a z_a^T) * (z_b z_b^T)) / N^2`` with the two
``(N, N)`` Gram matrices: when ``D > N`` (the paper's 8192-wide projector on batches of 2048;
the ``full`` preset's 8192 on 512) it takes that route, ``2 N^2 D`` multiply-adds forward and
as many backward, never forming ``c`` (``benchmarks/bench_loss.py`` measures both). Under several
replicas it always uses ``c``, which is what the replicas all-reduce.

**Distributed training.** Inside ``strategy.run`` of a ``tf.distribute`` strategy with ``R > 1``
replicas, each replica holds ``N / R`` rows of the global batch. The loss then sums, across
replicas, the batch size, the per-feature sums giving the mean and the variance, and ``c`` (all
with differentiable all-reduces), so every replica computes the loss of the *global* batch, the
same value as one device would on all ``N`` rows. Each replica's gradient of that value is ``R``
times its share (the gradient of an all-reduce sum is an all-reduce sum), and Keras optimisers
*sum* gradients across replicas, so a training step must differentiate
``scale_for_replicas(loss)`` (``loss / R``) -- the Keras convention that the per-replica losses
add up to the global loss. :class:`BarlowTwinsLoss` returns that share already, like every
built-in Keras loss, and ``Model.fit`` multiplies it back by ``R`` for its progress bar. Outside
a strategy, or with one replica, all of this is the identity. BatchNorm layers inside the
network need ``synchronized=True`` for their own statistics to be global too.

**Checks.** In eager mode bad input raises a ``ValueError`` that names the shapes received:
shapes that differ, a rank other than 2, fewer than 2 rows, NaN or inf values. Inside a
``tf.function`` the shape checks happen once, at trace time, for free; the only run-time check
left is a scalar assert that the batch has at least 2 rows, and only when the batch size is
not known when tracing. Values are not checked for NaN in graph mode, so that a float16
overflow remains the loss-scale optimiser's business.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

#: Weight of the redundancy-reduction term in the paper (and in ``bt_helpers.config`` presets).
LAMBDA_OFFDIAG = 0.0051
#: Added to the per-feature variance before dividing (PyTorch BatchNorm's default, which the
#: official implementation uses).
EPS = 1e-5

_SERIAL_PACKAGE = "bt_helpers"


# --- tf.distribute: the global batch -----------------------------------------------------------

def _multi_replica_context():
    """The replica context inside ``strategy.run`` with more than one replica, else ``None``."""
    if tf.distribute.in_cross_replica_context():
        return None
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync <= 1:
        return None
    return ctx


def num_replicas() -> int:
    """How many replicas compute the current step: ``R`` inside ``strategy.run``, else 1.

    Returns:
        ``num_replicas_in_sync`` of the strategy when called in a replica context (inside
        ``strategy.run``, hence inside a Keras ``train_step`` run by ``Model.fit``), 1 anywhere
        else (no strategy, one replica, or the cross-replica context of ``strategy.scope()``).
    """
    ctx = _multi_replica_context()
    return 1 if ctx is None else int(ctx.num_replicas_in_sync)


def cross_replica_sum(values):
    """Sum tensors over the replicas of a ``tf.distribute`` strategy, differentiably.

    Inside ``strategy.run`` with ``R > 1`` replicas every replica gets the sum of the ``R``
    values (one batched all-reduce for a nested structure); anywhere else the values are
    returned unchanged. The gradient of the sum is itself an all-reduce sum of the incoming
    gradients, so a loss computed from summed statistics must be divided by ``R`` before
    differentiating (see :func:`scale_for_replicas`).

    Args:
        values: a tensor or a nested structure (list, tuple, dict) of tensors with the same
            shapes on every replica.

    Returns:
        The same structure, summed across replicas.
    """
    ctx = _multi_replica_context()
    if ctx is None:
        return values
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, values)


def scale_for_replicas(loss):
    """This replica's share of a global loss: ``loss / R`` inside ``strategy.run``.

    The Keras convention under ``tf.distribute``: each replica differentiates a loss such that
    the per-replica values (and gradients, which optimisers sum) add up to the global ones.
    :func:`barlow_twins_loss` returns the global value on every replica, so a custom
    ``train_step`` differentiates ``scale_for_replicas(loss)`` and reports ``loss``.

    Args:
        loss: a scalar tensor, the same global value on every replica.

    Returns:
        ``loss / num_replicas()`` (``loss`` itself outside a multi-replica context).
    """
    r = num_replicas()
    return loss if r == 1 else loss / tf.cast(r, loss.dtype)


# --- input checks ------------------------------------------------------------------------------

def _as_float32(z, name: str) -> tf.Tensor:
    z = tf.convert_to_tensor(z)
    if not (z.dtype.is_floating or z.dtype.is_integer):
        raise TypeError(f"`{name}` must hold real numbers (float32, bfloat16, ...). "
                        f"Received: {name}.dtype={z.dtype.name}.")
    return tf.cast(z, tf.float32)


def _shape_str(z) -> str:
    return str(tuple(z.shape.as_list())) if z.shape.rank is not None else "<unknown rank>"


def _check_finite_eager(z: tf.Tensor, name: str) -> None:
    bad = int(tf.size(z)) - int(tf.math.count_nonzero(tf.math.is_finite(z)))
    if bad:
        raise ValueError(
            f"`{name}` holds {bad} NaN or inf value(s); received {name}.shape="
            f"{_shape_str(z)}. The embeddings are broken before the loss: look for a too "
            "large learning rate, a float16 overflow or NaN inputs.")


def _check_embeddings(func: str, **named) -> tuple:
    """Cast to float32 and check shapes; returns the tensors, plus a graph-mode assert or None."""
    tensors = [_as_float32(z, name) for name, z in named.items()]
    names = list(named)
    received = ", ".join(f"{n}.shape={_shape_str(z)}" for n, z in zip(names, tensors))
    for n, z in zip(names, tensors):
        if z.shape.rank is not None and z.shape.rank != 2:
            raise ValueError(
                f"{func} expects embeddings of shape (N, D) (batch, features), rank 2; "
                f"received {received}. Flatten or pool the network output first.")
    if len(tensors) == 2 and not tensors[0].shape.is_compatible_with(tensors[1].shape):
        raise ValueError(
            f"{func} expects z_a and z_b of the same shape (N, D): the two views of the same "
            f"N images through the same network. Received {received}.")
    multi = _multi_replica_context() is not None  # then the local batch may be 1 row
    eager = tf.executing_eagerly()
    assert_op = None
    n_static = tensors[0].shape[0] if tensors[0].shape.rank is not None else None
    if not multi:
        if n_static is not None and n_static < 2:
            raise ValueError(
                f"{func} standardises every feature over the batch, so it needs N >= 2 rows; "
                f"received {received}. Use a batch of at least 2 images.")
        if n_static is None and not eager:
            assert_op = tf.debugging.assert_greater_equal(
                tf.shape(tensors[0])[0], 2,
                message=f"{func} needs a batch of at least 2 rows (N >= 2) to standardise "
                        "each feature over the batch")
    if eager:
        for n, z in zip(names, tensors):
            _check_finite_eager(z, n)
    return tensors, assert_op


# --- the pieces --------------------------------------------------------------------------------

def _standardize(tensors, eps: float):
    """Per-feature standardisation of each ``(n, D)`` tensor over the (global) batch.

    Returns the standardised tensors and the global batch size ``N`` (a float32 scalar).
    """
    n_local = tf.cast(tf.shape(tensors[0])[0], tf.float32)
    n, sums = cross_replica_sum((n_local, [tf.reduce_sum(z, axis=0) for z in tensors]))
    centred = [z - s / n for z, s in zip(tensors, sums)]                      # (n, D) each
    sq_sums = cross_replica_sum([tf.reduce_sum(tf.square(x), axis=0) for x in centred])
    return [x * tf.math.rsqrt(q / n + eps) for x, q in zip(centred, sq_sums)], n


def _check_eps(eps) -> float:
    eps = float(eps)
    if not eps >= 0:
        raise ValueError(f"`eps` must be a number >= 0. Received: eps={eps!r}")
    return eps


def normalize(z, eps: float = EPS) -> tf.Tensor:
    """Standardise each feature of ``z`` over the batch (BatchNorm without scale and offset).

    ``(z - mean) / sqrt(var + eps)`` with the mean and the *biased* variance (divided by ``N``)
    of every column, as in the paper's pseudocode and the official implementation. Under a
    ``tf.distribute`` strategy the statistics are those of the global batch.

    Args:
        z: embeddings, shape ``(N, D)`` (batch, features), any real dtype.
        eps: added to the variance, >= 0; keeps a constant feature finite (it becomes 0).
            ``eps=0`` reproduces the 2021 Keras example, NaN included. Defaults to ``1e-5``.

    Returns:
        A float32 tensor of shape ``(N, D)``: every column has mean 0 and variance
        ``var / (var + eps)`` (1 up to ``eps``).

    Raises:
        ValueError: (eager mode) if ``z`` is not rank 2, has fewer than 2 rows, or holds NaN
            or inf; the message names the shape received.
    """
    eps = _check_eps(eps)
    (z,), check = _check_embeddings("normalize", z=z)
    with tf.control_dependencies([check] if check is not None else []):
        (z_norm,), _ = _standardize([z], eps)
    return z_norm


def cross_correlation(z_a, z_b, eps: float = EPS) -> tf.Tensor:
    """The ``(D, D)`` cross-correlation matrix ``c`` of two views, computed over the batch.

    ``c_ij = sum_n z_a_norm[n, i] * z_b_norm[n, j] / N``: the correlation between feature ``i``
    of view A and feature ``j`` of view B. Entries lie in ``[-1, 1]``; ``c_ii = 1`` when
    feature ``i`` is the same (up to a positive affine map) in both views, ``c_ij = 0`` for
    ``i != j`` when features carry no information about each other (linearly).

    Args:
        z_a: embeddings of the first views, shape ``(N, D)``.
        z_b: embeddings of the second views of the same ``N`` images, shape ``(N, D)``.
        eps: added to each feature's variance (see :func:`normalize`). Defaults to ``1e-5``.

    Returns:
        ``c``, float32, shape ``(D, D)``; rows index features of ``z_a``, columns of ``z_b``.

    Raises:
        ValueError: (eager mode) for shapes that differ, a rank other than 2, ``N < 2`` or
            NaN/inf values; the message names the shapes received.
    """
    return barlow_twins_terms(z_a, z_b, eps=eps).c


def off_diagonal(c) -> tf.Tensor:
    """The off-diagonal entries of a square matrix, flattened in row-major order.

    ``[c[0, 1], c[0, 2], ..., c[0, D-1], c[1, 0], c[1, 2], ...]``, without copying through a
    boolean mask: dropping the last entry of the flattened matrix and viewing the rest as
    ``(D - 1, D + 1)`` puts every diagonal entry in column 0.

    Args:
        c: a square matrix, shape ``(D, D)``, any dtype.

    Returns:
        A tensor of shape ``(D * (D - 1),)`` with the dtype of ``c``.

    Raises:
        ValueError: if ``c`` is not a square matrix (the message gives its shape).
    """
    c = tf.convert_to_tensor(c)
    shape = c.shape
    if shape.rank != 2 or (shape[0] is not None and shape[1] is not None
                           and shape[0] != shape[1]):
        raise ValueError("off_diagonal expects a square (D, D) matrix such as c. "
                         f"Received: c.shape={_shape_str(c)}")
    d = tf.shape(c)[0]
    flat = tf.reshape(c, [-1])[:-1]                               # (D*D - 1,)
    return tf.reshape(tf.reshape(flat, [d - 1, d + 1])[:, 1:], [-1])   # (D*(D-1),)


@dataclasses.dataclass(frozen=True)
class BarlowTwinsTerms:
    """The two terms of the Barlow Twins loss, their sum and the matrix they come from.

    Unpacks as the triple ``invariance, redundancy, c = barlow_twins_terms(z_a, z_b)``, and
    can be returned from a ``tf.function`` or ``strategy.run`` (it implements TensorFlow's
    nest protocol, ``__tf_flatten__``).

    Attributes:
        invariance: ``sum_i (1 - c_ii)^2``, float32 scalar: zero when every feature is the
            same in both views (up to a positive affine map).
        redundancy: ``lambda_offdiag * sum_{i != j} c_ij^2``, float32 scalar, *already
            weighted*: zero when no feature of one view is correlated with another feature of
            the other view.
        c: the cross-correlation matrix, float32, shape ``(D, D)``.
        loss: ``invariance + redundancy``, the Barlow Twins loss (computed with the terms, so
            that it is differentiable inside the same ``GradientTape``).
    """

    invariance: tf.Tensor
    redundancy: tf.Tensor
    c: tf.Tensor
    loss: tf.Tensor

    def __iter__(self):
        return iter((self.invariance, self.redundancy, self.c))

    def __tf_flatten__(self):
        return (), (self.invariance, self.redundancy, self.c, self.loss)

    @classmethod
    def __tf_unflatten__(cls, metadata, components):
        return cls(*components)


def barlow_twins_terms(z_a, z_b, lambda_offdiag: float = LAMBDA_OFFDIAG,
                       eps: float = EPS) -> BarlowTwinsTerms:
    """The invariance term, the weighted redundancy-reduction term and ``c``.

    Zbontar et al. (2021), arXiv:2103.03230, eq. (1): with ``c`` the cross-correlation matrix
    of the per-feature standardised views (:func:`cross_correlation`),
    ``invariance = sum_i (1 - c_ii)^2`` and
    ``redundancy = lambda_offdiag * sum_{i != j} c_ij^2``. The redundancy term is computed as
    ``lambda_offdiag * (sum(c^2) - sum_i c_ii^2)``, with no masked copy of ``c``. Under a
    ``tf.distribute`` strategy all three use the global batch (see the module docstring).

    Args:
        z_a: embeddings of the first views, shape ``(N, D)``, any real dtype.
        z_b: embeddings of the second views of the same ``N`` images, shape ``(N, D)``.
        lambda_offdiag: weight of the redundancy term, >= 0. Defaults to ``0.0051`` (the paper).
        eps: added to each feature's variance before dividing (see :func:`normalize`), >= 0.
            Defaults to ``1e-5``.

    Returns:
        A :class:`BarlowTwinsTerms` that unpacks as ``(invariance, redundancy, c)``: two
        float32 scalars and the float32 ``(D, D)`` matrix; its ``.loss`` is their sum.

    Raises:
        ValueError: for a negative ``lambda_offdiag`` or ``eps``, and (eager mode) for shapes
            that differ, a rank other than 2, ``N < 2`` or NaN/inf values; the message names
            the shapes received.
    """
    return _terms("barlow_twins_terms", z_a, z_b, lambda_offdiag, eps, need_c=True)


def _check_lambda(lambda_offdiag) -> float:
    lambda_offdiag = float(lambda_offdiag)
    if not lambda_offdiag >= 0:
        raise ValueError("`lambda_offdiag` must be a number >= 0 (the paper uses 0.0051). "
                         f"Received: lambda_offdiag={lambda_offdiag!r}")
    return lambda_offdiag


def _gram_is_cheaper(z: tf.Tensor) -> bool:
    """Whether sum(c^2) is cheaper through the (N, N) Gram matrices: D > N, one replica."""
    n, d = z.shape
    return (n is not None and d is not None and d > n
            and _multi_replica_context() is None)


@tf.custom_gradient
def _sum_sq_via_gram(za, zb):
    """``sum((za^T zb)^2)`` as ``sum(G_a * G_b)``, ``G = z z^T`` of shape ``(N, N)``.

    The gradient uses the symmetry of the Gram matrices: ``d/dza = 2 G_b za``, one matmul per
    view instead of the two that differentiating ``za @ za^T`` generically costs.
    """
    g_a = tf.matmul(za, za, transpose_b=True)                          # (N, N)
    g_b = tf.matmul(zb, zb, transpose_b=True)                          # (N, N)

    def grad(dy):
        return 2.0 * dy * tf.matmul(g_b, za), 2.0 * dy * tf.matmul(g_a, zb)   # (N, D) each

    return tf.reduce_sum(g_a * g_b), grad


def _terms(func, z_a, z_b, lambda_offdiag, eps, need_c) -> BarlowTwinsTerms:
    lambda_offdiag, eps = _check_lambda(lambda_offdiag), _check_eps(eps)
    (z_a, z_b), check = _check_embeddings(func, z_a=z_a, z_b=z_b)
    with tf.control_dependencies([check] if check is not None else []):
        (za, zb), n = _standardize([z_a, z_b], eps)                   # (n, D) each
    za = za / n                                     # fold 1/N into the (n, D) side: O(N D)
    if need_c or not _gram_is_cheaper(za):
        c, diag = cross_replica_sum((
            tf.matmul(za, zb, transpose_a=True),    # (D, D)
            tf.reduce_sum(za * zb, axis=0),         # (D,): c_ii without reading c
        ))
        sum_sq = tf.reduce_sum(tf.square(c))
    else:
        # sum_ij c_ij^2 = ||za^T zb||_F^2 = sum_nm (za za^T)_nm (zb zb^T)_nm: 2 N^2 D flops
        # instead of N D^2, and the backward pass likewise (no (D, D) matrix at all).
        c, diag = None, tf.reduce_sum(za * zb, axis=0)
        sum_sq = _sum_sq_via_gram(za, zb)
    invariance = tf.reduce_sum(tf.square(1.0 - diag))
    redundancy = lambda_offdiag * (sum_sq - tf.reduce_sum(tf.square(diag)))
    return BarlowTwinsTerms(invariance, redundancy, c, invariance + redundancy)


def barlow_twins_loss(z_a, z_b, lambda_offdiag: float = LAMBDA_OFFDIAG,
                      eps: float = EPS) -> tf.Tensor:
    """The Barlow Twins loss of two views (Zbontar et al., 2021, arXiv:2103.03230).

    ``sum_i (1 - c_ii)^2 + lambda_offdiag * sum_{i != j} c_ij^2`` with ``c`` the ``(D, D)``
    cross-correlation matrix of the per-feature standardised views. The loss is symmetric in
    ``z_a`` and ``z_b`` and unchanged by a positive per-feature scale or any shift of either.

    Under a ``tf.distribute`` strategy this is the loss of the *global* batch, the same value
    on every replica; differentiate ``scale_for_replicas(loss)`` (module docstring).

    Args:
        z_a: embeddings of the first views, shape ``(N, D)``, any real dtype.
        z_b: embeddings of the second views of the same ``N`` images, shape ``(N, D)``.
        lambda_offdiag: weight of the redundancy term, >= 0. Defaults to ``0.0051``.
        eps: added to each feature's variance before dividing, >= 0. Defaults to ``1e-5``.

    Returns:
        A float32 scalar tensor.

    Raises:
        ValueError: as :func:`barlow_twins_terms`.

    Example:

    >>> z = np.random.default_rng(0).normal(size=(256, 32)).astype("float32")
    >>> float(barlow_twins_loss(z, z)) < 1.0   # identical views, nearly uncorrelated features
    True
    """
    return _terms("barlow_twins_loss", z_a, z_b, lambda_offdiag, eps, need_c=False).loss


@keras.saving.register_keras_serializable(package=_SERIAL_PACKAGE)
class BarlowTwinsLoss(keras.losses.Loss):
    """The Barlow Twins loss as a ``keras.losses.Loss``: ``loss_fn(z_a, z_b)``.

    A thin wrapper of :func:`barlow_twins_loss` (Zbontar et al., 2021, arXiv:2103.03230). The
    two arguments are the two views' embeddings, both ``(N, D)`` (Keras calls them
    ``y_true``, ``y_pred``; the loss is symmetric). It returns a scalar, so ``reduction`` and
    ``sample_weight`` have no effect.

    Under a ``tf.distribute`` strategy, inside ``strategy.run``, it returns this replica's
    share ``loss / R`` of the global-batch loss, like the built-in Keras losses: ``Model.fit``
    sums the gradients across replicas and multiplies the reported loss back by ``R``.

    Args:
        lambda_offdiag: weight of the redundancy-reduction term, >= 0. Defaults to ``0.0051``.
        eps: added to each feature's variance, >= 0. Defaults to ``1e-5``.
        name: the loss's name. Defaults to ``"barlow_twins_loss"``.
        reduction: accepted for Keras compatibility; no effect on a scalar loss.
        dtype: dtype the inputs are converted to before the float32 computation. Defaults to
            ``None`` (``keras.backend.floatx()``).

    Example:

    >>> loss_fn = BarlowTwinsLoss(lambda_offdiag=0.0051)
    >>> z_a = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")
    >>> bool(loss_fn(z_a, z_a) < loss_fn(z_a, z_a[::-1]))
    True
    """

    def __init__(self, lambda_offdiag: float = LAMBDA_OFFDIAG, eps: float = EPS,
                 name: str = "barlow_twins_loss", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.lambda_offdiag = _check_lambda(lambda_offdiag)
        self.eps = _check_eps(eps)

    def call(self, y_true, y_pred):
        loss = barlow_twins_loss(y_true, y_pred, self.lambda_offdiag, self.eps)
        return scale_for_replicas(loss)

    def get_config(self) -> dict:
        return {**super().get_config(), "lambda_offdiag": self.lambda_offdiag, "eps": self.eps}


# --- toy embeddings for the notebooks ----------------------------------------------------------

def toy_views(batch_size: int, proj_dim: int, noise: float = 0.5, redundancy: float = 0.0,
              seed: int = 0) -> tuple:
    """Two synthetic views whose cross-correlation is known in closed form.

    A shared embedding ``z = sqrt(1 - r) * s + sqrt(r) * g`` (``s`` of shape ``(N, D)`` and
    ``g`` of shape ``(N, 1)``, standard normal) has unit-variance features with pairwise
    correlation ``r = redundancy``; each view adds its own Gaussian noise of standard deviation
    ``noise``. In expectation ``c_ii = 1 / (1 + noise^2)`` and
    ``c_ij = r / (1 + noise^2)`` for ``i != j``, plus sampling noise of order ``1 / sqrt(N)``.

    Args:
        batch_size: ``N``, rows per view, >= 2.
        proj_dim: ``D``, features per row, >= 1.
        noise: standard deviation of each view's own noise, >= 0. Defaults to ``0.5``.
        redundancy: correlation between any two features, in ``[0, 1]``. Defaults to ``0``.
        seed: seed of the NumPy generator. Defaults to 0.

    Returns:
        ``(z_a, z_b)``, two float32 NumPy arrays of shape ``(batch_size, proj_dim)``.

    Raises:
        ValueError: for a size, noise or redundancy out of range (the message gives it).
    """
    if int(batch_size) != batch_size or batch_size < 2:
        raise ValueError("`batch_size` must be an integer >= 2. "
                         f"Received: batch_size={batch_size!r}")
    if int(proj_dim) != proj_dim or proj_dim < 1:
        raise ValueError(f"`proj_dim` must be an integer >= 1. Received: proj_dim={proj_dim!r}")
    if not noise >= 0:
        raise ValueError(f"`noise` must be >= 0. Received: noise={noise!r}")
    if not 0 <= redundancy <= 1:
        raise ValueError(f"`redundancy` must be in [0, 1]. Received: redundancy={redundancy!r}")
    rng = np.random.default_rng(seed)
    n, d = int(batch_size), int(proj_dim)
    s = rng.standard_normal((n, d))
    g = rng.standard_normal((n, 1))
    z = np.sqrt(1.0 - redundancy) * s + np.sqrt(redundancy) * g           # (N, D)
    z_a = z + noise * rng.standard_normal((n, d))
    z_b = z + noise * rng.standard_normal((n, d))
    return z_a.astype(np.float32), z_b.astype(np.float32)
