"""Per-image augmentation layers and the two-view recipes of Barlow Twins (notebook 01).

Barlow Twins learns what stays the same between two augmented views of one image, so the
augmentations decide what the network must ignore. This module holds:

* six Keras 3 preprocessing layers in the Keras style -- :class:`RandomResizedCrop`,
  :class:`RandomHorizontalFlip`, :class:`RandomColorJitter`, :class:`RandomGrayscale`,
  :class:`RandomGaussianBlur`, :class:`RandomSolarize`. Each draws its random parameters per
  image in ``get_random_transformation`` (from its ``SeedGenerator``, or from a seed you pass)
  and applies them deterministically in ``transform_images``; each takes ``value_range=(0, 1)``
  by default, is the identity when ``training=False``, round-trips through ``get_config`` and
  works on whole batches inside ``tf.data`` and inside a compiled (``tf.function``, XLA)
  training step;
* :data:`RECIPES`, one table of the augmentation parameters of each view for the recipes
  ``official`` (facebookresearch/barlowtwins), ``cifar`` (solo-learn's CIFAR recipe) and
  ``original_2021`` (the 2021 Keras example, defects reproduced on purpose for teaching);
* :class:`TwoViews` (a layer, also built by :func:`make_two_views`) and :func:`two_views` (a
  pure function of ``(images, recipe, seed)``) that turn a batch of ``uint8`` 0-255 or float
  0-1 images into two differently augmented ``float32`` views in ``[0, 1]``;
* :func:`to_unit_float`, the input check every entry point shares.

Which API to use:

* in a ``tf.data`` pipeline: ``ds.batch(256).map(make_two_views("cifar", seed=0),
  num_parallel_calls=tf.data.AUTOTUNE)`` (one layer built once, called on every batch; its
  seed generator advances at each call). On CPU, ``tf.data.Options().threading
  .max_intra_op_parallelism = 1`` runs whole batches in parallel instead of splitting each
  small op across threads: faster (``benchmarks/bench_augment.py``). For reproducible views
  whatever the parallelism, seed each batch: ``layer(images, seed=(seed, step))``;
* inside a compiled training step: build the layer once (``self.augment =
  make_two_views(...)`` in the model's ``__init__``) and call ``self.augment(images)`` in
  ``train_step``; the layer is XLA-compatible (``jit_compile=True``);
* in a notebook or a test: ``view_a, view_b = two_views(images, recipe="cifar", seed=0)``; the
  same seed gives the same views, always.

The layers use TensorFlow ops directly (the course runs Keras on the TensorFlow backend), and
channels-last images.
"""

from __future__ import annotations

import math
import keras
import numpy as np
import tensorflow as tf

try:  # the base class of Keras' own image augmentation layers (not exported publicly)
    from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (  # noqa: E501
        BaseImagePreprocessingLayer,
    )
except ImportError as error:  # pragma: no cover - only with a Keras older than 3.8
    raise ImportError("bt_helpers.augment needs keras>=3.8 (BaseImagePreprocessingLayer). "
                      f"Installed: keras {keras.__version__}. Run `make venv`.") from error

#: ITU-R BT.601 luma weights: the Y of YIQ and the grayscale of every layer here (they sum to 1).
LUMA = (0.299, 0.587, 0.114)

# RGB -> YIQ. The I and Q rows sum to zero, so grey colours have no chroma and a rotation of the
# (I, Q) plane -- a hue rotation -- keeps the luma of every pixel.
_YIQ = np.array([[0.299, 0.587, 0.114],
                 [0.595716, -0.274453, -0.321263],
                 [0.211456, -0.522591, 0.311135]])
_GRAY = np.outer(np.ones(3), LUMA)  # (3, 3): x -> gray(x) in every channel
_CHROMA = np.eye(3) - _GRAY  # (3, 3): x -> x - gray(x)
# Generator of hue rotations in RGB: rotating (I, Q) by theta is
# _GRAY + cos(theta) * _CHROMA + sin(theta) * _HUE_SIN; the sign turns red towards yellow for
# theta > 0, the direction of a positive HSV hue shift (tf.image.adjust_hue, torchvision).
_HUE_SIN = np.linalg.inv(_YIQ) @ np.array([[0, 0, 0], [0, 0, 1], [0, -1, 0]]) @ _YIQ


def _register(cls):
    return keras.saving.register_keras_serializable(package="bt_helpers")(cls)


# ------------------------------------------------------------------------------------------------
# input checks
# ------------------------------------------------------------------------------------------------

def to_unit_float(images, name: str = "images") -> tf.Tensor:
    """Checks images and returns them as ``float32`` in ``[0, 1]``.

    Accepted: ``uint8`` images with values 0-255 (divided by 255 here) or float images with
    values in ``[0, 1]``, of rank 3 ``(height, width, 3)`` or 4 ``(batch, height, width, 3)``.
    Anything else raises an error that says what was received and how to fix it.

    The rank, channel and dtype checks are static and always run. The value check on float
    images (range and NaN) runs on the values when called eagerly; inside a ``tf.function`` or
    ``tf.data`` it is one ``tf.debugging.Assert`` (XLA drops it).

    Args:
        images: array or tensor, ``(batch, height, width, 3)`` or ``(height, width, 3)``.
        name: how error messages call the argument. Defaults to ``"images"``.

    Returns:
        A ``float32`` tensor of the same shape, values in ``[0, 1]``.

    Raises:
        ValueError: wrong rank, channel count, dtype, values outside ``[0, 1]`` or NaN.
    """
    images = tf.convert_to_tensor(images)
    check_image_shape_and_dtype(images, name)
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) * (1.0 / 255.0)
    images = tf.cast(images, tf.float32)
    _check_float_values(images, name)
    return images


def check_image_shape_and_dtype(images, name: str = "images") -> None:
    """Static checks of :func:`to_unit_float`: rank 3 or 4, 3 channels, uint8 or float dtype.

    A dimension unknown at trace time (e.g. in some ``tf.data`` pipelines) is not checked.
    """
    dtype = tf.as_dtype(images.dtype)
    if dtype != tf.uint8 and not dtype.is_floating:
        raise ValueError(f"Expected {name} of dtype uint8 (0-255) or float (0-1); received "
                         f"{dtype.name}. Cast 0-255 integer images to uint8, or divide them by "
                         "255 to get floats in [0, 1].")
    if getattr(images.shape, "rank", 0) is None:  # a tensor of unknown rank
        return
    shape = tuple(images.shape)
    rank = len(shape)
    if rank not in (3, 4):
        fix = {2: " Add a channel axis and convert to RGB, e.g. "
                  "`tf.image.grayscale_to_rgb(images[..., None])`.",
               5: " Merge the extra axis into the batch axis, e.g. "
                  "`tf.reshape(images, (-1, height, width, 3))`."}.get(rank, "")
        raise ValueError(f"Expected {name} of rank 3 (height, width, channels) or 4 (batch, "
                         f"height, width, channels); received rank {rank}, shape {shape}.{fix}")
    channels = shape[-1]
    if channels is not None and channels != 3:
        fix = {1: " Convert grayscale images to RGB with `tf.image.grayscale_to_rgb(images)`.",
               4: " Drop the alpha channel: `images[..., :3]`."}.get(channels, "")
        raise ValueError(f"Expected {name} with 3 (RGB) channels in the last axis; received "
                         f"{channels} channels, shape {shape}.{fix}")


def _check_float_values(images: tf.Tensor, name: str) -> None:
    fix = ("Divide 0-255 images by 255 (or pass them as uint8); map images normalised to "
           "[-1, 1] or by mean/std back to [0, 1].")
    if tf.executing_eagerly():
        values = images.numpy()
        if values.size == 0:
            return
        if np.isnan(values).any():
            raise ValueError(f"Expected {name} in [0, 1]; received {int(np.isnan(values).sum())} "
                             "NaN values. Check the decoding/normalisation that produced them.")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(f"Expected float {name} in [0, 1]; received min={low:g}, "
                             f"max={high:g}. {fix}")
        return
    # In a graph: one assert (NaN fails both comparisons).
    tf.debugging.Assert(tf.reduce_all((images >= 0.0) & (images <= 1.0)),
                        [f"Expected float {name} in [0, 1] and no NaN; received min/max:",
                         tf.reduce_min(images), tf.reduce_max(images), fix])


# ------------------------------------------------------------------------------------------------
# seeds and helpers
# ------------------------------------------------------------------------------------------------

def _seed_tensor(seed, generator) -> tf.Tensor:
    """A ``(2,)`` int32 seed for the ``tf.random.stateless_*`` ops.

    ``None`` advances the layer's own ``SeedGenerator`` (the Keras way); an int, a ``(2,)``
    tensor or another ``SeedGenerator`` are used as given (a pure function of the seed).
    """
    if seed is None:
        seed = generator.next()
    elif isinstance(seed, keras.random.SeedGenerator):
        seed = seed.next()
    elif isinstance(seed, (int, np.integer)):
        seed = tf.constant([int(seed) & 0x7FFFFFFF, 0], tf.int32)
    seed = tf.convert_to_tensor(seed)
    if seed.dtype != tf.int32:  # SeedGenerator state is int64; stateless ops on XLA want int32
        seed = tf.cast(tf.math.floormod(tf.cast(seed, tf.int64), 2**31 - 1), tf.int32)
    return seed


def _batch_size(images):
    return 1 if len(images.shape) == 3 else tf.shape(images)[0]


def _uniforms(seed, batch_size, count: int) -> tf.Tensor:
    """``(batch_size, count)`` uniforms in [0, 1), a pure function of ``seed``."""
    rows = batch_size
    # The same seed must give the same augmentation eagerly, in tf.data and in a jit-compiled
    # step. Stateless *integers* agree with and without XLA; stateless floats do not (XLA
    # turns the random bits into floats another way), so floats are made from 24-bit integers.
    bits = tf.random.stateless_uniform((rows, count), seed=seed, minval=0, maxval=1 << 24,
                                       dtype=tf.int32, alg="philox")
    return tf.cast(bits, tf.float32) * (1.0 / (1 << 24))  # uniform on [0, 1)


def _in_xla_context() -> bool:
    """Whether ops are being traced for XLA (``jit_compile=True``)."""
    try:
        from tensorflow.python.framework import ops
        from tensorflow.python.ops import control_flow_util

        return bool(control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph()))
    except Exception:  # pragma: no cover - private API moved; the default path still works
        return False


def _check_range(value, name, low, high, allow_equal=True):
    pair = tuple(float(v) for v in value)
    if len(pair) != 2 or not (low <= pair[0] <= pair[1] <= high) or (
            not allow_equal and pair[0] == pair[1]):
        raise ValueError(f"`{name}` must be a pair (min, max) with {low:g} <= min <= max <= "
                         f"{high:g}. Received: {name}={value!r}")
    return pair


def _check_probability(p, name="p"):
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"`{name}` is a probability and must be in [0, 1]. Received: {name}={p!r}")
    return float(p)


def _check_value_range(value_range):
    if not isinstance(value_range, (tuple, list)) or len(value_range) != 2 or \
            not float(value_range[0]) < float(value_range[1]):
        raise ValueError("`value_range` must be a pair (low, high) with low < high, e.g. (0, 1) "
                         f"or (0, 255). Received: value_range={value_range!r}")
    return (float(value_range[0]), float(value_range[1]))


def apply_color_matrices(images, matrices):
    """``out[b, h, w] = matrices[b] @ images[b, h, w]``: one 3x3 colour map per image.

    A batched matrix product over the pixels; on CPU it is several times faster than
    ``tf.einsum`` or a ``tf.where`` over the pixels.

    Args:
        images: ``(batch, height, width, 3)`` float32.
        matrices: ``(batch, 3, 3)`` float32, acting on RGB column vectors.

    Returns:
        ``(batch, height, width, 3)`` float32.
    """
    shape = tf.shape(images)
    pixels = tf.reshape(images, (shape[0], -1, 3))  # (B, H*W, 3)
    return tf.reshape(tf.linalg.matmul(pixels, matrices, transpose_b=True), shape)


def _augment_where_applied(images, apply, p, augment_all, augment_some):
    """Applies an augmentation to the images where ``apply`` is true, the others unchanged.

    ``augment_all(images)`` must handle the per-image decision itself (it runs on every image);
    ``augment_some(selected, index)`` augments only the selected images (``index`` ``(n, 1)``
    into the batch). Outside XLA, and when ``p < 1``, the selected images are gathered,
    augmented and scattered back: with ``p = 0.2`` that is about a fifth of the work. XLA needs
    static shapes, so there (and for ``p = 1``) ``augment_all`` runs.
    """
    if p >= 1.0 or _in_xla_context():
        return augment_all(images)
    index = tf.where(apply)  # (n, 1) int64
    selected = augment_some(tf.gather_nd(images, index), index)
    return tf.tensor_scatter_nd_update(images, index, selected)


def _as_batch(images):
    """Rank 3 -> rank 4 (and a flag to undo it)."""
    if len(images.shape) == 3:
        return images[None], True
    return images, False


# ------------------------------------------------------------------------------------------------
# the base of our layers
# ------------------------------------------------------------------------------------------------

class _RandomAugmentation(BaseImagePreprocessingLayer):
    """Shared plumbing: apply-probability ``p``, per-image or per-batch draws, seeds, config.

    Randomness comes as uniforms: ``num_uniforms`` per image, column 0 for the apply decision,
    then ``_NUM_UNIFORMS`` for the parameters (shared by the whole batch when ``per_batch``),
    then ``_NUM_PER_IMAGE`` that stay per image in any case. Subclasses implement
    ``_parameters(uniforms, images)`` and ``_transform(images, transformation)``.
    """

    _USE_BASE_FACTOR = False
    _NUM_UNIFORMS = 0
    _NUM_PER_IMAGE = 0

    def __init__(self, p=1.0, per_batch=False, value_range=(0, 1), seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.p = _check_probability(p)
        self.per_batch = bool(per_batch)
        self.value_range = _check_value_range(value_range)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True

    def get_random_transformation(self, data, training=True, seed=None):
        """Draws this layer's random parameters, one set per image (or one per batch).

        Args:
            data: images ``(batch, height, width, channels)`` or ``(height, width, channels)``,
                or a dict with an ``"images"`` entry.
            training: ``False`` returns ``None`` (no augmentation).
            seed: ``None`` advances the layer's ``SeedGenerator``; an int or a ``(2,)`` int
                tensor makes the draw a pure function of that seed.

        Returns:
            A dict of tensors whose first axis is the batch; ``"apply"`` ``(batch,)`` bool says
            which images get augmented.
        """
        if not training:
            return None
        images = data["images"] if isinstance(data, dict) else data
        uniforms = _uniforms(_seed_tensor(seed, self.generator), _batch_size(images),
                             self.num_uniforms)
        return self.transformation_from_uniforms(uniforms, images)

    @property
    def num_uniforms(self) -> int:
        """How many uniforms per image :meth:`transformation_from_uniforms` consumes."""
        return 1 + self._NUM_UNIFORMS + self._NUM_PER_IMAGE

    def transformation_from_uniforms(self, uniforms, images):
        """The transformation made of given uniforms ``(batch, num_uniforms)`` in [0, 1).

        With ``per_batch``, the first row's decision and parameters serve the whole batch.
        """
        shared = 1 + self._NUM_UNIFORMS
        if self.per_batch:
            batch_size = tf.shape(uniforms)[0]
            uniforms = tf.concat([tf.broadcast_to(uniforms[:1, :shared], (batch_size, shared)),
                                  uniforms[:, shared:]], axis=1)
        transformation = {"apply": uniforms[:, 0] < self.p}
        transformation.update(self._parameters(uniforms[:, 1:], images))
        return transformation

    def _parameters(self, uniforms, images):
        return {}

    def transform_images(self, images, transformation, training=True):
        images = tf.cast(images, self.compute_dtype)
        if not training or transformation is None:
            return images
        images, unbatched = _as_batch(images)
        images = self._transform(images, transformation)
        return images[0] if unbatched else images

    def _transform(self, images, transformation):
        raise NotImplementedError

    def transform_labels(self, labels, transformation, training=True):
        return labels

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"p": self.p, "per_batch": self.per_batch,
                       "value_range": self.value_range, "seed": self.seed})
        return config


# ------------------------------------------------------------------------------------------------
# RandomResizedCrop
# ------------------------------------------------------------------------------------------------

def _interpolation_matrices(start, stop, out_size, in_size):
    """Bilinear sampling as a matrix: ``(batch, out_size, in_size)``, two non-zeros per row.

    Row ``i`` samples the input at ``start * (in_size - 1) + i * (stop - start) * (in_size - 1)
    / (out_size - 1)``, the sampling grid of ``tf.image.crop_and_resize`` (``start > stop``
    samples backwards: a flip).
    """
    steps = tf.range(out_size, dtype=tf.float32)[None, :]  # (1, out)
    span = float(in_size - 1)
    step = (stop - start)[:, None] * span / float(max(out_size - 1, 1))
    position = start[:, None] * span + steps * step  # (batch, out)
    position = tf.clip_by_value(position, 0.0, span)
    low = tf.floor(position)
    frac = position - low  # (batch, out)
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, in_size - 1)
    return (tf.one_hot(low, in_size) * (1.0 - frac)[..., None]
            + tf.one_hot(high, in_size) * frac[..., None])  # (batch, out, in)


def crop_and_resize_matmul(images, boxes, size):
    """``tf.image.crop_and_resize`` (bilinear) as two batched matrix products.

    Works under XLA, where ``CropAndResize`` has no kernel, and maps onto a GPU's matrix units.

    Args:
        images: ``(batch, height, width, channels)`` float.
        boxes: ``(batch, 4)`` normalised ``[y1, x1, y2, x2]``, one box per image.
        size: ``(out_height, out_width)``, static ints.

    Returns:
        ``(batch, out_height, out_width, channels)`` float32.
    """
    images = tf.cast(images, tf.float32)
    height, width = int(images.shape[1]), int(images.shape[2])
    rows = _interpolation_matrices(boxes[:, 0], boxes[:, 2], size[0], height)  # (B, oh, h)
    cols = _interpolation_matrices(boxes[:, 1], boxes[:, 3], size[1], width)  # (B, ow, w)
    return separable_matmul(images, rows, cols)


def separable_matmul(images, rows, cols):
    """``rows[b] @ images[b, :, :, c] @ cols[b]^T`` for every image ``b`` and channel ``c``.

    A separable linear map of each image (a bilinear crop-and-resize, a Gaussian blur) as two
    batched matrix products, without a per-image loop.

    Args:
        images: ``(B, H, W, C)`` float32.
        rows: ``(B, H2, H)``, mixing the rows.
        cols: ``(B, W2, W)``, mixing the columns.

    Returns:
        ``(B, H2, W2, C)`` float32.
    """
    shape = tf.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    out_height, out_width = tf.shape(rows)[1], tf.shape(cols)[1]
    # Along the height: (B, H2, H) @ (B, H, W*C).
    images = tf.linalg.matmul(rows, tf.reshape(images, (batch, height, -1)))
    # Along the width: bring W forward, (B, W2, W) @ (B, W, H2*C), and back.
    images = tf.transpose(tf.reshape(images, (batch, out_height, width, channels)),
                          (0, 2, 1, 3))  # (B, W, H2, C)
    images = tf.linalg.matmul(cols, tf.reshape(images, (batch, width, -1)))
    images = tf.reshape(images, (batch, out_width, out_height, channels))
    return tf.transpose(images, (0, 2, 1, 3))  # (B, H2, W2, C)


@_register
class RandomResizedCrop(_RandomAugmentation):
    """Crops a random box of random area and aspect ratio, resized back to the input size.

    The Inception / torchvision ``RandomResizedCrop``, batched: every image gets its own box.
    Keras has no such layer (``keras.layers.RandomCrop`` keeps the crop size fixed and
    ``RandomZoom`` keeps the aspect ratio), so this one is written here.

    Sampling, per image, as torchvision does: up to ``attempts`` candidate boxes with area
    fraction ``s ~ U(scale)`` and aspect ratio ``r = width / height`` log-uniform in ``ratio``;
    the first box that fits in the image wins, at a uniform position. If none fits, the
    fallback is the largest centred box whose ratio is inside ``ratio`` (the whole image for
    square inputs). Unlike torchvision, sizes are not rounded to whole pixels: the box is
    resampled bilinearly (``tf.image.crop_and_resize``), so small images keep the full range
    of crops.

    Because large boxes with an extreme ratio do not fit, the realised area is not uniform on
    ``scale``: for a square image it is uniform on ``[0.08, 0.75]`` and thins out towards 1
    (mean area about 0.5, as with torchvision). ``tests/test_augment.py`` checks the realised
    areas against an independent NumPy implementation of this algorithm.

    Under XLA (``jit_compile=True``), where ``CropAndResize`` has no kernel, the same
    bilinear resampling runs as two batched matrix products (:func:`crop_and_resize_matmul`).

    Args:
        scale: range of the crop's area as a fraction of the image's. Defaults to
            ``(0.08, 1.0)``.
        ratio: range of the crop's aspect ratio (width / height), sampled log-uniformly.
            Defaults to ``(3/4, 4/3)``.
        attempts: candidate boxes per image before the fallback. Defaults to 10.
        per_batch: draw one box for the whole batch instead of one per image (the 2021
            example's behaviour, kept for teaching). Defaults to ``False``.
        seed: int or ``None``, seeds the layer's ``SeedGenerator``.
        **kwargs: base layer arguments, e.g. ``name``.

    Input shape:
        ``(batch, height, width, channels)`` or ``(height, width, channels)``, values in
        ``value_range``.

    Output shape:
        Same as the input, ``float32``.

    Example:

    >>> crop = RandomResizedCrop(seed=0)
    >>> crop(np.random.rand(8, 32, 32, 3)).shape
    TensorShape([8, 32, 32, 3])
    """

    def __init__(self, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts=10, per_batch=False,
                 seed=None, **kwargs):
        kwargs.pop("p", None)
        super().__init__(p=1.0, per_batch=per_batch, seed=seed, **kwargs)
        self.scale = _check_range(scale, "scale", 1e-6, 1.0)
        self.ratio = _check_range(ratio, "ratio", 1e-3, 1e3)
        if int(attempts) < 1:
            raise ValueError(f"`attempts` must be >= 1. Received: attempts={attempts!r}")
        self.attempts = int(attempts)
        self._NUM_UNIFORMS = 4 * self.attempts  # area, ratio, top, left for each attempt

    def _parameters(self, uniforms, images):
        shape = tf.shape(images)
        height = tf.cast(shape[-3], tf.float32)
        width = tf.cast(shape[-2], tf.float32)
        u = tf.reshape(uniforms, (-1, self.attempts, 4))  # (B, attempts, 4)
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * u[..., 0]
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        ratio = tf.exp(log_lo + (log_hi - log_lo) * u[..., 1])  # width / height in pixels
        box_h = tf.sqrt(area / ratio * (width / height))  # fraction of the image height
        box_w = tf.sqrt(area * ratio * (height / width))  # fraction of the image width
        fits = (box_h <= 1.0) & (box_w <= 1.0)  # (B, attempts)
        first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)  # (B,)
        candidates = tf.stack([box_h, box_w, u[..., 2], u[..., 3]], axis=-1)  # (B, att, 4)
        chosen = tf.gather(candidates, first, axis=1, batch_dims=1)  # (B, 4)
        # Fallback when no attempt fits: the largest centred box with an allowed ratio.
        image_ratio = width / height
        fallback = tf.stack([tf.minimum(1.0, image_ratio / self.ratio[0]),
                             tf.minimum(1.0, self.ratio[1] / image_ratio), 0.5, 0.5])
        chosen = tf.where(tf.reduce_any(fits, axis=1)[:, None], chosen, fallback[None])
        box_h, box_w, u_top, u_left = tf.unstack(chosen, axis=1)
        top, left = u_top * (1.0 - box_h), u_left * (1.0 - box_w)
        return {"boxes": tf.stack([top, left, top + box_h, left + box_w], axis=1)}  # (B, 4)

    def _transform(self, images, transformation):
        return self.crop(images, transformation["boxes"])

    @staticmethod
    def crop(images, boxes):
        """Resamples ``boxes`` (``(batch, 4)``, normalised ``[y1, x1, y2, x2]``) at input size.

        ``uint8`` or float input; ``float32`` output in the input's value scale.
        """
        images, unbatched = _as_batch(images)
        boxes = tf.cast(boxes, tf.float32)
        if _in_xla_context():
            out = crop_and_resize_matmul(images, boxes, (images.shape[1], images.shape[2]))
        else:
            batch_size = tf.shape(images)[0]
            out = tf.image.crop_and_resize(images, boxes, tf.range(batch_size),
                                           tf.shape(images)[1:3], method="bilinear")
        return out[0] if unbatched else out

    def get_config(self):
        config = super().get_config()
        config.pop("p")
        config.update({"scale": self.scale, "ratio": self.ratio, "attempts": self.attempts})
        return config


# ------------------------------------------------------------------------------------------------
# RandomHorizontalFlip
# ------------------------------------------------------------------------------------------------

@_register
class RandomHorizontalFlip(_RandomAugmentation):
    """Mirrors each image left-right with probability ``p``.

    Written here rather than wrapping ``keras.layers.RandomFlip``, whose probability is fixed
    at 0.5 and whose mode defaults to ``"horizontal_and_vertical"`` (upside-down images are
    not a view of the same scene). For ``p=0.5`` the result is distributed as
    ``keras.layers.RandomFlip(mode="horizontal")``.

    Args:
        p: probability that an image is flipped. Defaults to 0.5.
        nested_p: ``None``, or the 2021 example's defect, for teaching: a second coin with
            this probability inside the first (``random_flip_left_right`` inside a 50% gate),
            so an image flips with probability ``p * nested_p`` (25%). Defaults to ``None``.
        per_batch: one flip decision for the whole batch (the nested coin stays per image, as
            in the 2021 example). Defaults to ``False``.
        seed: int or ``None``, seeds the layer's ``SeedGenerator``.
        **kwargs: base layer arguments, e.g. ``name``.

    Input shape:
        ``(batch, height, width, channels)`` or ``(height, width, channels)``.

    Output shape:
        Same as the input, ``float32``.
    """

    def __init__(self, p=0.5, nested_p=None, per_batch=False, seed=None, **kwargs):
        super().__init__(p=p, per_batch=per_batch, seed=seed, **kwargs)
        self.nested_p = None if nested_p is None else _check_probability(nested_p, "nested_p")

    @property
    def _NUM_PER_IMAGE(self):
        return 0 if self.nested_p is None else 1

    def _parameters(self, uniforms, images):
        if self.nested_p is None:
            return {}
        return {"nested": uniforms[:, 0] < self.nested_p}  # per image, even per_batch

    def transformation_from_uniforms(self, uniforms, images):
        transformation = super().transformation_from_uniforms(uniforms, images)
        if self.nested_p is not None:  # a second coin, per image, inside the gate
            transformation = {"apply": transformation["apply"] & transformation["nested"]}
        return transformation

    def _transform(self, images, transformation):
        width = tf.shape(images)[2]
        columns = tf.range(width)[None, :]  # (1, W)
        columns = tf.where(transformation["apply"][:, None], width - 1 - columns, columns)
        return tf.gather(images, columns, axis=2, batch_dims=1)  # one gather, no select

    def get_config(self):
        config = super().get_config()
        config["nested_p"] = self.nested_p
        return config


# ------------------------------------------------------------------------------------------------
# RandomColorJitter
# ------------------------------------------------------------------------------------------------

def color_jitter_matrices(brightness, contrast, saturation, hue):
    """The per-image 3x3 colour matrix of a jitter (without the contrast offset).

    Brightness ``b`` scales, saturation ``s`` blends with the grayscale, hue ``h`` (in turns)
    rotates the chroma plane of YIQ, contrast ``c`` scales around the image's mean gray ``m``:
    ``jitter(x) = M x + (1 - c) * b * m`` with ``M = b c (G + s (cos(2 pi h) C + sin(2 pi h)
    S))``, where ``G`` maps a colour to its gray, ``C = I - G`` keeps the chroma and ``S`` is
    the chroma rotated by 90 degrees.

    Args:
        brightness, contrast, saturation, hue: ``(batch,)`` factors (hue in turns).

    Returns:
        ``(batch, 3, 3)`` float32, acting on RGB column vectors.
    """
    scale = (brightness * contrast)[:, None, None]
    angle = 2.0 * math.pi * hue
    chroma = (saturation * tf.cos(angle))[:, None, None] * tf.constant(_CHROMA, tf.float32) + (
        saturation * tf.sin(angle))[:, None, None] * tf.constant(_HUE_SIN, tf.float32)
    return scale * (tf.constant(_GRAY, tf.float32) + chroma)  # (B, 3, 3)


@_register
class RandomColorJitter(_RandomAugmentation):
    """With probability ``p`` per image, jitters brightness, contrast, saturation and hue.

    ``keras.layers.RandomColorJitter`` does not fit: it has no apply-probability (torchvision
    wraps ``ColorJitter`` in ``RandomApply(p=0.8)``), its ``value_range`` defaults to
    ``(0, 255)``, its brightness is additive and its saturation factor has other units. This
    layer follows torchvision's factors, drawn per image:

    * brightness ``b ~ U[max(0, 1 - brightness), 1 + brightness]``: ``x * b``;
    * contrast ``c ~ U[max(0, 1 - contrast), 1 + contrast]``: blend with the mean gray;
    * saturation ``s ~ U[max(0, 1 - saturation), 1 + saturation]``: blend with the grayscale;
    * hue ``h ~ U[-hue, hue]`` turns of the colour wheel.

    Order: a fixed order (brightness, contrast, saturation, hue), not torchvision's random
    order, and one clip to ``value_range`` at the end instead of one after each step. Hue is a
    rotation of the (I, Q) chroma plane of YIQ by ``2 pi h``, which keeps each pixel's luma,
    where torchvision shifts the hue channel of HSV, which keeps each pixel's max and min
    (both turn red towards yellow for ``h > 0``; on CIFAR-10 pixels the rotation moves the
    HSV hue by about ``0.8 h``). With these two choices the four adjustments are linear maps
    of the colour that commute, so random order and fixed order give the same image, and all
    four fuse into one 3x3 matrix per image (:func:`color_jitter_matrices`): one batched
    product instead of a chain of element-wise passes and an HSV round trip, several times
    faster on CPU (``benchmarks/bench_augment.py --profile``). Clipping between steps would
    make the order matter; torchvision's per-step clipping differs from this layer only where
    an intermediate step leaves ``[0, 1]``.

    Args:
        p: probability that an image is jittered. Defaults to 0.8.
        brightness: non-negative strength. Defaults to 0.4.
        contrast: non-negative strength. Defaults to 0.4.
        saturation: non-negative strength. Defaults to 0.2.
        hue: strength in turns, in ``[0, 0.5]``. Defaults to 0.1.
        per_batch: one decision and one set of factors for the whole batch (the 2021
            example's behaviour, kept for teaching). Defaults to ``False``.
        value_range: ``(low, high)`` of the input values. Defaults to ``(0, 1)``.
        seed: int or ``None``, seeds the layer's ``SeedGenerator``.
        **kwargs: base layer arguments, e.g. ``name``.

    Input shape:
        ``(batch, height, width, 3)`` or ``(height, width, 3)``, values in ``value_range``.

    Output shape:
        Same as the input, ``float32``, values in ``value_range``.
    """

    _NUM_UNIFORMS = 4

    def __init__(self, p=0.8, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
                 per_batch=False, value_range=(0, 1), seed=None, **kwargs):
        super().__init__(p=p, per_batch=per_batch, value_range=value_range, seed=seed, **kwargs)
        for name, value in (("brightness", brightness), ("contrast", contrast),
                            ("saturation", saturation)):
            if float(value) < 0:
                raise ValueError(f"`{name}` must be >= 0. Received: {name}={value!r}")
        if not 0.0 <= float(hue) <= 0.5:
            raise ValueError(f"`hue` is a fraction of a turn and must be in [0, 0.5]. "
                             f"Received: hue={hue!r}")
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.saturation = float(saturation)
        self.hue = float(hue)

    def _parameters(self, uniforms, images):
        strengths = (self.brightness, self.contrast, self.saturation)
        low = tf.constant([max(0.0, 1.0 - v) for v in strengths] + [-self.hue])
        high = tf.constant([1.0 + v for v in strengths] + [self.hue])
        factors = low + (high - low) * uniforms[:, :4]  # (B, 4), uniform in [low, high]
        return dict(zip(("brightness", "contrast", "saturation", "hue"),
                        tf.unstack(factors, axis=1)))

    def _transform(self, images, transformation):
        low, high = self.value_range
        if (low, high) != (0.0, 1.0):
            images = (images - low) / (high - low)
        images = self.jitter(images, transformation)
        if (low, high) != (0.0, 1.0):
            images = images * (high - low) + low
        return images

    @staticmethod
    def jitter(images, transformation, input_scale=1.0):
        """Applies drawn factors to ``[0, 1]`` images (``input_scale`` multiplies the input
        first, e.g. ``1/255`` for 0-255 values) and clips to ``[0, 1]``."""
        apply = transformation["apply"]
        factors = tf.stack([transformation[k] for k in ("brightness", "contrast", "saturation",
                                                        "hue")], axis=1)  # (B, 4)
        factors = tf.where(apply[:, None], factors, tf.constant([[1.0, 1.0, 1.0, 0.0]]))
        brightness, contrast, saturation, hue = tf.unstack(factors, axis=1)
        matrices = color_jitter_matrices(brightness, contrast, saturation, hue)  # (B, 3, 3)
        # Not jittered: exactly the identity (cos/sin round-off would otherwise leak in).
        matrices = tf.where(apply[:, None, None], matrices, tf.eye(3, batch_shape=[1]))
        matrices = matrices * input_scale
        shape = tf.shape(images)
        pixels = shape[1] * shape[2]
        luma_weights = tf.tile(tf.constant(LUMA, tf.float32), [pixels]) / tf.cast(pixels,
                                                                                   tf.float32)
        # (B,): a matrix-vector product, twice as fast on CPU as a mean over the middle axes.
        mean_gray = tf.linalg.matvec(tf.reshape(images, (shape[0], -1)), luma_weights)
        offset = (1.0 - contrast) * brightness * mean_gray * input_scale  # (B,)
        out = apply_color_matrices(images, matrices) + offset[:, None, None, None]
        return tf.clip_by_value(out, 0.0, 1.0)

    def get_config(self):
        config = super().get_config()
        config.update({"brightness": self.brightness, "contrast": self.contrast,
                       "saturation": self.saturation, "hue": self.hue})
        return config


# ------------------------------------------------------------------------------------------------
# RandomGrayscale
# ------------------------------------------------------------------------------------------------

@_register
class RandomGrayscale(_RandomAugmentation):
    """Replaces each image by its luma in all three channels with probability ``p``.

    ``keras.layers.RandomGrayscale(factor=p)`` has the same per-image semantics; this layer
    exists for the 2021 example's per-batch decision (``per_batch=True``) and to share the
    luma weights :data:`LUMA` with :class:`RandomColorJitter`. The tests check it against the
    Keras layer on the images both convert.

    Args:
        p: probability that an image turns gray. Defaults to 0.2.
        per_batch: one decision for the whole batch. Defaults to ``False``.
        seed: int or ``None``, seeds the layer's ``SeedGenerator``.
        **kwargs: base layer arguments, e.g. ``name``.

    Input shape:
        ``(batch, height, width, 3)`` or ``(height, width, 3)``.

    Output shape:
        Same as the input, ``float32``.
    """

    def __init__(self, p=0.2, per_batch=False, seed=None, **kwargs):
        super().__init__(p=p, per_batch=per_batch, seed=seed, **kwargs)

    def _transform(self, images, transformation):
        return self.grayscale(images, transformation["apply"], self.p)

    @staticmethod
    def grayscale(images, apply, p=0.5):
        """Gray where ``apply`` (per image): ``images`` ``(batch, height, width, 3)``."""
        def all_images(x):
            # The gray map or the identity, per image: one batched product (a select over
            # the pixels is several times slower on CPU).
            matrices = tf.where(apply[:, None, None], tf.constant(_GRAY, tf.float32)[None],
                                tf.eye(3, batch_shape=[1]))
            return apply_color_matrices(x, matrices)

        def some_images(x, index):
            shape = tf.shape(x)
            gray = tf.linalg.matmul(tf.reshape(x, (-1, 3)), tf.constant(_GRAY.T, tf.float32))
            return tf.reshape(gray, shape)

        return _augment_where_applied(tf.cast(images, tf.float32), apply, p, all_images,
                                      some_images)


# ------------------------------------------------------------------------------------------------
# RandomGaussianBlur
# ------------------------------------------------------------------------------------------------

def gaussian_blur_matrices(sigma, size: int, radius: int):
    """Per-image 1-D Gaussian blurs as ``(batch, size, size)`` matrices, reflect boundary.

    ``matrix @ column`` blurs a column of ``size`` pixels with a kernel of half-width
    ``radius`` (capped at ``size - 1``), the borders mirrored like ``tf.pad(mode="REFLECT")``.

    Args:
        sigma: ``(batch,)`` standard deviations in pixels.
        size: number of pixels along the blurred axis (static).
        radius: kernel half-width in pixels (static).

    Returns:
        ``(batch, size, size)`` float32 with rows summing to 1.
    """
    radius = int(min(radius, size - 1))
    offsets = np.arange(-radius, radius + 1)  # (K,)
    weights = tf.exp(-tf.constant(offsets ** 2, tf.float32)[None, :]
                     / (2.0 * tf.square(tf.maximum(sigma, 1e-6))[:, None]))  # (B, K)
    weights = weights / tf.reduce_sum(weights, axis=1, keepdims=True)
    source = np.arange(size)[:, None] + offsets[None, :]  # (size, K): pixel each tap reads
    source = (size - 1) - np.abs((size - 1) - np.abs(source))  # mirror at both borders
    taps = tf.constant(np.eye(size, dtype=np.float32)[source])  # (size, K, size)
    return tf.einsum("bk,ikj->bij", weights, taps)


@_register
class RandomGaussianBlur(_RandomAugmentation):
    """Blurs each image with probability ``p``, with its own ``sigma ~ U(sigma)``.

    ``keras.layers.RandomGaussianBlur`` does not fit: it draws one sigma per batch, its
    ``factor`` (documented as a strength) is used as a randomly drawn apply-probability, its
    kernel defaults to 3x3 and its ``value_range`` to ``(0, 255)``. Here the blur is separable
    and vectorised over the batch without a per-image loop: each image's 1-D kernel becomes a
    blur matrix (borders mirrored, :func:`gaussian_blur_matrices`), and ``A_rows @ image @
    A_cols^T`` blurs every channel in two batched matrix products. Outside XLA only the images
    drawn for blurring are blurred (gathered, then scattered back); under XLA every image goes
    through the products, with the identity for those not blurred.

    Args:
        p: probability that an image is blurred. Defaults to 0.5.
        sigma: range of the standard deviation in pixels. Defaults to ``(0.1, 2.0)``.
        kernel_size: odd kernel size, or ``None`` for ``2 * ceil(3 * max sigma) + 1``
            (capped by the image size). Defaults to ``None``.
        freeze_sigma: the 2021 example's defect, for teaching: draw one sigma when the layer
            is created and use it for every image forever, as ``np.random.random()`` inside
            a ``tf.function`` ran once, at trace time. Defaults to ``False``.
        per_batch: one decision for the whole batch. Defaults to ``False``.
        seed: int or ``None``, seeds the layer's ``SeedGenerator`` (and the frozen sigma).
        **kwargs: base layer arguments, e.g. ``name``.

    Input shape:
        ``(batch, height, width, channels)`` or ``(height, width, channels)``, static height
        and width.

    Output shape:
        Same as the input, ``float32``.
    """

    _NUM_UNIFORMS = 1

    def __init__(self, p=0.5, sigma=(0.1, 2.0), kernel_size=None, freeze_sigma=False,
                 per_batch=False, seed=None, **kwargs):
        super().__init__(p=p, per_batch=per_batch, seed=seed, **kwargs)
        self.sigma = _check_range(sigma, "sigma", 0.0, 1e3)
        if kernel_size is not None and (int(kernel_size) < 1 or int(kernel_size) % 2 == 0):
            raise ValueError(f"`kernel_size` must be a positive odd integer or None. "
                             f"Received: kernel_size={kernel_size!r}")
        self.kernel_size = None if kernel_size is None else int(kernel_size)
        self.freeze_sigma = bool(freeze_sigma)
        self.frozen_sigma = None
        if self.freeze_sigma:
            rng = np.random.default_rng(seed)
            self.frozen_sigma = float(rng.uniform(*self.sigma))

    @property
    def radius(self) -> int:
        if self.kernel_size is not None:
            return self.kernel_size // 2
        return max(1, int(math.ceil(3.0 * self.sigma[1])))

    def _parameters(self, uniforms, images):
        if self.freeze_sigma:
            return {"sigma": tf.fill(tf.shape(uniforms[:, 0]), self.frozen_sigma)}
        return {"sigma": self.sigma[0] + (self.sigma[1] - self.sigma[0]) * uniforms[:, 0]}

    def _transform(self, images, transformation):
        return self.blur(images, transformation, self.radius, self.p)

    @staticmethod
    def blur(images, transformation, radius, p=0.5):
        """Blurs where ``transformation["apply"]``, each image with its ``"sigma"``."""
        height, width = images.shape[1], images.shape[2]
        if height is None or width is None:
            raise ValueError("RandomGaussianBlur needs a static image height and width; "
                             f"received shape {tuple(images.shape)}. Set it with "
                             "`images.set_shape(...)` or resize to a fixed size first.")
        apply, sigma = transformation["apply"], transformation["sigma"]

        def all_images(x):  # the identity for the images not blurred
            rows = gaussian_blur_matrices(sigma, int(height), radius)
            rows = tf.where(apply[:, None, None], rows, tf.eye(int(height), batch_shape=[1]))
            cols = gaussian_blur_matrices(sigma, int(width), radius)
            cols = tf.where(apply[:, None, None], cols, tf.eye(int(width), batch_shape=[1]))
            return separable_matmul(x, rows, cols)

        def some_images(x, index):
            selected = tf.gather_nd(sigma, index)
            return separable_matmul(x, gaussian_blur_matrices(selected, int(height), radius),
                              gaussian_blur_matrices(selected, int(width), radius))

        return _augment_where_applied(images, apply, p, all_images, some_images)

    def get_config(self):
        config = super().get_config()
        config.update({"sigma": self.sigma, "kernel_size": self.kernel_size,
                       "freeze_sigma": self.freeze_sigma})
        return config


# ------------------------------------------------------------------------------------------------
# RandomSolarize
# ------------------------------------------------------------------------------------------------

@_register
class RandomSolarize(_RandomAugmentation):
    """With probability ``p`` per image, inverts the pixels at or above ``threshold``.

    A pixel value ``x >= threshold`` becomes ``low + high - x`` (``1 - x`` on ``[0, 1]``),
    the others stay, as ``PIL.ImageOps.solarize`` does. ``keras.layers.Solarization`` does not
    fit: it has no apply-probability, its ``value_range`` defaults to ``(0, 255)`` and its
    threshold is drawn per image from ``U(threshold_factor[0], threshold_factor[1] * 255)``
    (the lower end is not scaled). The value range is the whole story of the 2021 example's
    solarize: written for 0-255 images (``x < 10``) and fed 0-1 images, it never fired;
    ``RandomSolarize(threshold=10, value_range=(0, 255))`` on ``[0, 1]`` images reproduces it.

    Args:
        p: probability that an image is solarized. Defaults to 0.2.
        threshold: pixel values at or above it are inverted, in ``value_range`` units.
            Defaults to 0.5.
        per_batch: one decision for the whole batch. Defaults to ``False``.
        value_range: ``(low, high)`` of the input values. Defaults to ``(0, 1)``.
        seed: int or ``None``, seeds the layer's ``SeedGenerator``.
        **kwargs: base layer arguments, e.g. ``name``.

    Input shape:
        ``(batch, height, width, channels)`` or ``(height, width, channels)``.

    Output shape:
        Same as the input, ``float32``.
    """

    def __init__(self, p=0.2, threshold=0.5, per_batch=False, value_range=(0, 1), seed=None,
                 **kwargs):
        super().__init__(p=p, per_batch=per_batch, value_range=value_range, seed=seed, **kwargs)
        self.threshold = float(threshold)

    def _transform(self, images, transformation):
        return self.solarize(images, transformation["apply"], self.threshold, self.value_range,
                             self.p)

    @staticmethod
    def solarize(images, apply, threshold, value_range=(0.0, 1.0), p=0.5):
        """``low + high - x`` where ``apply`` (per image) and ``x >= threshold``, else ``x``."""
        low, high = value_range

        def invert(x, thresholds):
            # An arithmetic blend: several times faster on CPU than a select over the pixels.
            above = tf.cast(x >= thresholds, x.dtype)
            return x + above * ((low + high) - 2.0 * x)

        def all_images(x):  # images not solarized get a threshold no pixel reaches
            never = high + abs(high - low) + 1.0
            return invert(x, tf.where(apply, float(threshold), never)[:, None, None, None])

        return _augment_where_applied(images, apply, p, all_images,
                                      lambda x, index: invert(x, float(threshold)))

    def get_config(self):
        config = super().get_config()
        config["threshold"] = self.threshold
        return config


# ------------------------------------------------------------------------------------------------
# recipes
# ------------------------------------------------------------------------------------------------

#: The order in which a view applies its steps (blur and grayscale commute: both are linear).
STEPS = ("crop", "flip", "jitter", "grayscale", "blur", "solarize")

STEP_LAYERS = {"crop": RandomResizedCrop, "flip": RandomHorizontalFlip,
               "jitter": RandomColorJitter, "grayscale": RandomGrayscale,
               "blur": RandomGaussianBlur, "solarize": RandomSolarize}

_JITTER = dict(p=0.8, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)

#: Every recipe in one table. ``steps`` maps a step of :data:`STEPS` to its layer's arguments:
#: a dict (both views), a pair of dicts (view a, view b: the asymmetry) or ``None`` (skipped).
#: ``per_batch`` makes every random decision once per batch instead of once per image.
RECIPES = {
    "official": {
        "about": "facebookresearch/barlowtwins (ImageNet, 224 px): blur always in view a and "
                 "10% in view b, solarize only in view b.",
        "per_batch": False,
        "steps": {
            "crop": dict(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
            "flip": dict(p=0.5),
            "jitter": _JITTER,
            "grayscale": dict(p=0.2),
            "blur": (dict(p=1.0, sigma=(0.1, 2.0)), dict(p=0.1, sigma=(0.1, 2.0))),
            "solarize": (dict(p=0.0, threshold=0.5), dict(p=0.2, threshold=0.5)),
        },
    },
    "cifar": {
        "about": "solo-learn's Barlow Twins CIFAR recipe: no blur on 32x32 images, "
                 "solarize only in view b.",
        "per_batch": False,
        "steps": {
            "crop": dict(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
            "flip": dict(p=0.5),
            "jitter": _JITTER,
            "grayscale": dict(p=0.2),
            "blur": None,
            "solarize": (dict(p=0.0, threshold=0.5), dict(p=0.2, threshold=0.5)),
        },
    },
    "original_2021": {
        "about": "The 2021 Keras example, defects kept for teaching: one decision per batch, "
                 "flip 25% (a 50% coin inside a 50% gate), solarize never fires (threshold "
                 "10 for 0-255 images on 0-1 images), blur sigma frozen at trace time (3x3), "
                 "square crops of 56-94% of the area, doubled jitter strengths.",
        "per_batch": True,
        "steps": {
            "crop": dict(scale=((24 / 32) ** 2, (31 / 32) ** 2), ratio=(1.0, 1.0)),
            "flip": dict(p=0.5, nested_p=0.5),
            "jitter": dict(p=0.8, brightness=0.8, contrast=0.6, saturation=0.6, hue=0.2),
            "grayscale": dict(p=0.2),
            "blur": dict(p=0.2, sigma=(0.0, 1.0), kernel_size=3, freeze_sigma=True),
            "solarize": dict(p=0.2, threshold=10.0, value_range=(0, 255)),
        },
    },
}


def recipe_steps(recipe, view: int) -> dict:
    """The layer arguments of one view of a recipe: ``{step: kwargs}`` in :data:`STEPS` order.

    Steps that are ``None`` are left out; so are those with ``p == 0`` (they never fire).

    Args:
        recipe: a name in :data:`RECIPES` or a dict shaped like its entries.
        view: 0 (view a) or 1 (view b).

    Returns:
        ``{step: kwargs}``, ``per_batch`` included in each kwargs.
    """
    recipe = _get_recipe(recipe)
    if view not in (0, 1):
        raise ValueError(f"`view` must be 0 or 1. Received: view={view!r}")
    steps = {}
    for step in STEPS:
        params = recipe["steps"].get(step)
        if isinstance(params, (tuple, list)):
            params = params[view]
        if params is None or params.get("p", 1.0) == 0.0:
            continue
        steps[step] = {**params, "per_batch": bool(recipe.get("per_batch", False))}
    return steps


def _get_recipe(recipe) -> dict:
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"Unknown recipe {recipe!r}. Valid recipes: "
                             f"{', '.join(sorted(RECIPES))}.")
        return RECIPES[recipe]
    if isinstance(recipe, dict) and isinstance(recipe.get("steps"), dict):
        unknown = set(recipe["steps"]) - set(STEPS)
        if unknown:
            raise ValueError(f"Unknown recipe steps {sorted(unknown)}; valid steps: {STEPS}.")
        return recipe
    raise ValueError("`recipe` must be a name in RECIPES or a dict with a 'steps' table. "
                     f"Received: recipe={recipe!r}")


def apply_steps(images, steps: dict, seed: int = 0, per_batch: bool = False):
    """Applies augmentation steps one layer at a time; each step seeded on its own.

    Step ``i`` of :data:`STEPS` draws with seed ``(seed, i)`` whatever the other steps are,
    so changing one step's parameters (or switching it off with ``p=0``) leaves the random
    draws of the others as they were: what an explorer needs to show the effect of one
    slider. Slower than :class:`TwoViews` (no fusion), and the same augmentation.

    Args:
        images: ``uint8`` 0-255 or float 0-1, ``(batch, height, width, 3)``.
        steps: ``{step: layer kwargs}`` for steps of :data:`STEPS` (others are skipped).
        seed: int. Defaults to 0.
        per_batch: passed to every layer. Defaults to ``False``.

    Returns:
        ``(view, transformations)``: the view (``float32`` in [0, 1]) and ``{step:
        transformation}``, e.g. ``transformations["flip"]["apply"]``.
    """
    x = to_unit_float(images)
    transformations = {}
    for index, step in enumerate(STEPS):
        if step not in steps or steps[step] is None:
            continue
        layer = STEP_LAYERS[step](**{**steps[step], "per_batch": per_batch})
        transformations[step] = layer.get_random_transformation(
            x, seed=tf.constant([int(seed), index], tf.int32))
        x = layer.transform_images(x, transformations[step])
    return tf.clip_by_value(x, 0.0, 1.0), transformations


# ------------------------------------------------------------------------------------------------
# two views
# ------------------------------------------------------------------------------------------------

@_register
class TwoViews(keras.layers.Layer):
    """Two differently augmented views of a batch, following a recipe of :data:`RECIPES`.

    Build it once and call it on every batch, in ``tf.data`` or inside a (compiled) training
    step::

        augment = TwoViews("cifar", seed=0)
        ds = ds.batch(256).map(augment)             # -> (view_a, view_b)
        view_a, view_b = augment(images_uint8)      # eager, or inside train_step

    Each call advances the layer's seed generator; ``augment(images, seed=s)`` instead makes
    the views a pure function of ``s`` (what :func:`two_views` does).

    View ``v`` applies the steps of :func:`recipe_steps(recipe, v) <recipe_steps>` with one
    layer per step (``self.layers_a``, ``self.layers_b``), each drawing its parameters in
    ``get_random_transformation``. Two steps are fused for speed, with the same draws: the
    flip becomes a mirrored crop box (``crop_and_resize`` samples ``x2 -> x1``), and the
    conversion of ``uint8`` input to ``[0, 1]`` rides on the crop. The tests check the fused
    result against the layers applied one by one.

    Args:
        recipe: a name in :data:`RECIPES` (or a dict shaped like its entries). Defaults to
            ``"cifar"``.
        seed: int or ``None``. Defaults to ``None`` (different views in every run).
        **kwargs: base layer arguments, e.g. ``name``.

    Call arguments:
        images: ``uint8`` 0-255 or float 0-1, ``(batch, height, width, 3)`` or
            ``(height, width, 3)``; checked by :func:`to_unit_float`.
        training: ``False`` returns the images twice, as float32 in ``[0, 1]``.
        seed: ``None`` (use the layer's generator) or an int / ``(2,)`` int tensor.

    Returns:
        ``(view_a, view_b)``, each ``float32`` in ``[0, 1]`` with the shape of ``images``.
    """

    def __init__(self, recipe="cifar", seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.recipe = recipe
        self._recipe = _get_recipe(recipe)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.views = []
        for view in (0, 1):
            layers = {}
            for index, (step, params) in enumerate(recipe_steps(self._recipe, view).items()):
                layer_seed = None if seed is None else int(seed) * 1000 + 100 * view + index
                layers[step] = STEP_LAYERS[step](seed=layer_seed, **params,
                                                 name=f"view_{'ab'[view]}_{step}")
            self.views.append(layers)
        self.layers_a, self.layers_b = self.views

    def __call__(self, images, *args, **kwargs):
        # Check the input before Keras' call machinery, so that a bad input raises our own
        # error (Keras would wrap it in a dump of the arguments).
        if not isinstance(images, keras.KerasTensor):
            images = tf.convert_to_tensor(images)
            check_image_shape_and_dtype(images)
            if images.dtype != tf.uint8:
                _check_float_values(tf.cast(images, tf.float32), "images")
        return super().__call__(images, *args, **kwargs)

    def call(self, images, training=True, seed=None):
        """Two views of ``images`` (checked by ``__call__``, see :func:`to_unit_float`)."""
        images = tf.convert_to_tensor(images)
        if not training:
            images = tf.cast(images, tf.float32) * (1.0 / 255.0 if images.dtype == tf.uint8
                                                   else 1.0)
            return images, images
        if images.dtype != tf.uint8:
            images = tf.cast(images, tf.float32)
        images, unbatched = _as_batch(images)
        views = self.transform_views(images, self.get_random_transformation(images, seed=seed))
        return tuple(v[0] for v in views) if unbatched else views

    def get_random_transformation(self, images, seed=None):
        """Draws every step's parameters for both views.

        Args:
            images: ``(batch, height, width, 3)`` (only the shape is used).
            seed: ``None`` advances the layer's generator; an int or ``(2,)`` int tensor makes
                the draw a pure function of the seed. One ``(batch, n)`` draw of uniforms
                serves every step of both views (columns in :data:`STEPS` order, view a first).

        Returns:
            ``[draws_a, draws_b]``, each ``{step: transformation}`` as the step's layer drew it.
        """
        layers = [layer for view in self.views for layer in view.values()]
        uniforms = _uniforms(_seed_tensor(seed, self.generator), _batch_size(images),
                             sum(layer.num_uniforms for layer in layers))  # one draw for all
        draws, start = [], 0
        for view in self.views:
            draws.append({})
            for step, layer in view.items():
                stop = start + layer.num_uniforms
                draws[-1][step] = layer.transformation_from_uniforms(uniforms[:, start:stop],
                                                                     images)
                start = stop
        return draws

    def transform_views(self, images, transformations):
        """Applies drawn parameters: ``images`` ``uint8`` or float in [0, 1], rank 4."""
        scale = 1.0 / 255.0 if images.dtype == tf.uint8 else 1.0
        images = tf.cast(images, tf.float32)  # once for both views
        return tuple(self._view(images, scale, layers, draws)
                     for layers, draws in zip(self.views, transformations))

    @staticmethod
    def _view(x, scale, layers, draws):
        """One view: the steps in order, with crop + flip + uint8 scaling fused."""
        if "crop" in layers:
            boxes = draws["crop"]["boxes"]
            if "flip" in layers:  # a flipped image = its crop box sampled right to left
                flips = draws["flip"]["apply"][:, None]
                boxes = tf.where(flips, tf.gather(boxes, [0, 3, 2, 1], axis=1), boxes)
            x = RandomResizedCrop.crop(x, boxes)  # in the input's scale
        elif "flip" in layers:
            x = layers["flip"].transform_images(x, draws["flip"])
        if "jitter" in layers and layers["jitter"].value_range == (0.0, 1.0):
            x = RandomColorJitter.jitter(x, draws["jitter"], input_scale=scale)
            clipped = True
        else:
            x = x * scale if scale != 1.0 else x
            if "jitter" in layers:
                x = layers["jitter"].transform_images(x, draws["jitter"])
            clipped = False
        for step in ("grayscale", "blur", "solarize"):
            if step in layers:
                x = layers[step].transform_images(x, draws[step])
        # Crop, flip, grayscale and blur average pixels and the solarize of a [0, 1] layer
        # maps [0, 1] onto itself: after the jitter's clip the view is already in [0, 1].
        if not (clipped and all(layer.value_range == (0.0, 1.0) for layer in layers.values())):
            x = tf.clip_by_value(x, 0.0, 1.0)
        return x

    def build(self, input_shape=None):
        for layers in self.views:
            for layer in layers.values():
                layer.build(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape, input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"recipe": self.recipe, "seed": self.seed})
        return config


def make_two_views(recipe="cifar", seed=None, **kwargs) -> TwoViews:
    """Builds the :class:`TwoViews` layer of a recipe: ``make_two_views(preset.recipe, seed=0)``.

    Build it once (outside any ``tf.function``) and call it per batch.
    """
    return TwoViews(recipe=recipe, seed=seed, **kwargs)


_TWO_VIEWS_CACHE: dict = {}


def two_views(images, recipe="cifar", seed=0):
    """Two augmented views of ``images``: a pure function of ``(images, recipe, seed)``.

    Same seed, same views; another seed, other views. Works eagerly, in ``tf.data`` and in a
    ``tf.function`` (``seed`` may be a ``(2,)`` int tensor, e.g. ``(base_seed, step)``).

    Args:
        images: ``uint8`` 0-255 or float 0-1, ``(batch, height, width, 3)`` or
            ``(height, width, 3)``.
        recipe: a name in :data:`RECIPES`. Defaults to ``"cifar"``.
        seed: int or ``(2,)`` int tensor. Defaults to 0.

    Returns:
        ``(view_a, view_b)``, ``float32`` in ``[0, 1]``, shaped like ``images``.
    """
    if isinstance(seed, (tuple, list)):
        seed = tf.stack([tf.cast(s, tf.int64) for s in seed])
    key = recipe if isinstance(recipe, str) else id(recipe)
    if key not in _TWO_VIEWS_CACHE:
        with tf.init_scope():  # the layer's seed variables must not live in a traced graph
            _TWO_VIEWS_CACHE[key] = TwoViews(recipe, seed=0, name=f"two_views_{key}")
    return _TWO_VIEWS_CACHE[key](images, seed=seed)
