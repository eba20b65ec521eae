"""Training: the Barlow Twins model, its callbacks and resumable ``fit`` (notebook 05).

* :class:`BarlowTwinsModel` -- a ``keras.Model`` whose ``train_step`` makes the two views (on
  the device, inside the compiled step, when ``augment_on_device``; else they come from
  ``tf.data``), runs encoder + projector on both, and logs the loss and its two terms
  (``invariance``, ``redundancy``) separately.
* :func:`make_dataset` -- the ``tf.data`` pipeline: a seeded permutation per epoch (a pure
  function of ``(seed, epoch)``, so a resumed run sees the batches it would have seen), full
  batches only (the loss standardises over the batch), views made per image with seeds
  ``(seed, step)``.
* :func:`make_strategy` -- ``tf.distribute``: ``MultiWorkerMirroredStrategy`` when
  ``TF_CONFIG`` is set, ``MirroredStrategy`` with several GPUs, else the default strategy.
  Under several replicas the loss is the global-batch loss (``bt_helpers.loss`` sums its
  statistics across replicas) and every BatchNorm is synchronised.
* Callbacks: :class:`ProgressBar` (tqdm: a bar in a terminal and a widget in a notebook),
  :class:`KNNMonitor` (kNN accuracy on the held-out split every ``knn_every`` epochs, into the
  history), :class:`StepLogger` (per-step loss terms and learning rate; stops at the first
  NaN/inf loss), :class:`Checkpointer` (an atomic checkpoint every epoch, with CSV logs written
  from it), and Keras' ``TensorBoard``.
* :func:`train` -- all of the above: builds the model from a preset, resumes from ``out_dir``
  when it holds a checkpoint, trains, exports the encoder. :func:`load_encoder` gives the
  trained encoder back for evaluation (notebook 06, ``python -m bt_helpers eval``).

**What a run directory holds** (``out_dir``)::

    run.json          the preset, seed and data the run was started with
    checkpoint.npz    the last complete epoch: weights, optimizer state, epoch, history
    history.csv       one row per epoch: loss, invariance, redundancy, knn_accuracy, lr, time
    steps.csv         one row per optimizer step: loss, invariance, redundancy, lr
    tensorboard/      TensorBoard event files (``tensorboard --logdir out_dir/tensorboard``)
    encoder.keras     the trained encoder, written when training ends (plain Keras model)

**Resuming.** ``checkpoint.npz`` is written to a temporary file in the same folder, flushed to
disk, then renamed over the old one (``os.replace`` is atomic), so at any instant it is either
the previous complete checkpoint or the new complete one, never half of one, whatever kills the
process. It holds every weight (BatchNorm statistics included), every optimizer variable (the
momentum buffers and the step counter that drives the learning-rate schedule) and the epoch.
The data order and the augmentation are pure functions of ``(seed, epoch, step)``, so a resumed
run continues exactly where an uninterrupted one would have been, up to floating-point
reduction order. The CSV files are rewritten from the checkpoint, so each epoch appears once.

**Devices.** Mixed precision (bfloat16) and XLA (``jit_compile``) follow the preset on a GPU and
are off on a CPU, where XLA measured slower here (see ``benchmarks/bench_train.py``).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from bt_helpers import loss as loss_lib

CHECKPOINT_NAME = "checkpoint.npz"
RUN_CONFIG_NAME = "run.json"
HISTORY_CSV = "history.csv"
STEPS_CSV = "steps.csv"
ENCODER_NAME = "encoder.keras"
TENSORBOARD_DIR = "tensorboard"
#: Version of the checkpoint layout; a checkpoint of another version is refused, not misread.
CHECKPOINT_FORMAT = 1
#: Images of the training split the kNN monitor uses as its labelled bank (at most).
KNN_BANK_SIZE = 10_000

HISTORY_FIELDS = ("epoch", "step", "loss", "invariance", "redundancy", "knn_accuracy", "lr",
                  "seconds", "pairs_per_second", "knn_seconds", "trace_seconds")
STEP_FIELDS = ("step", "epoch", "loss", "invariance", "redundancy", "lr")


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or inf; the message names the step and the last good checkpoint."""


# ------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------

def resize_images(images, size: Optional[int]):
    """Bilinear (antialiased) resize of ``(batch, h, w, c)`` float images to ``size x size``.

    The identity when ``size`` is ``None`` or already the images' side.
    """
    if size is None:
        return images
    if images.shape[1] == size and images.shape[2] == size:
        return images
    return tf.image.resize(images, (size, size), method="bilinear", antialias=True)


class BarlowTwinsModel(keras.Model):
    """Encoder + projector trained with the Barlow Twins loss; ``fit`` runs its ``train_step``.

    ``train_step`` takes either a batch of images (``uint8`` 0-255 or float 0-1, shape
    ``(batch, height, width, 3)``) when the model has an ``augmenter`` (the two views are then
    made on the device, inside the compiled step), or a pair ``(x_a, x_b)`` of ready-made views
    (from :func:`make_dataset` without on-device augmentation). It embeds both views with the
    same encoder and projector, computes ``bt_helpers.loss.barlow_twins_terms`` (the global
    batch under ``tf.distribute``), differentiates this replica's share of the loss
    (``loss.scale_for_replicas``, then ``optimizer.scale_loss`` for float16 loss scaling) and
    applies the gradients. It reports the epoch means ``loss``, ``invariance`` and
    ``redundancy`` (``redundancy`` is already weighted by ``lambda_offdiag``) and the values
    of the step itself as ``step_loss``, ``step_invariance``, ``step_redundancy``.

    Args:
        encoder: images ``(batch, size, size, 3)`` -> features ``(batch, F)``.
        projector: features ``(batch, F)`` -> embeddings ``(batch, D)``.
        lambda_offdiag: weight of the redundancy term. Defaults to 0.0051.
        augmenter: a ``bt_helpers.augment.TwoViews`` layer to make the views on the device, or
            ``None`` (``train_step`` receives ``(x_a, x_b)``). Defaults to None.
        image_size: side the views are resized to before the encoder (``None``: as they
            come). Defaults to None.
        seed: seed of the on-device augmentation; the views of step ``s`` use the seed
            ``(seed + 7919 * replica, s)``. Defaults to 0.
        name: model name. Defaults to ``"barlow_twins"``.

    Example:

    >>> net = models.build_from_preset(preset, seed=0)                 # doctest: +SKIP
    >>> model = BarlowTwinsModel(net.encoder, net.projector)           # doctest: +SKIP
    >>> model.compile(optimizer=optim.make_optimizer(preset, steps))   # doctest: +SKIP
    >>> model.fit(make_dataset(images.x_train, preset), epochs=2, steps_per_epoch=steps)
    """

    def __init__(self, encoder, projector, lambda_offdiag: float = loss_lib.LAMBDA_OFFDIAG,
                 augmenter=None, image_size: Optional[int] = None, seed: int = 0,
                 name: str = "barlow_twins", **kwargs):
        super().__init__(name=name, **kwargs)
        self.encoder = encoder
        self.projector = projector
        self.augmenter = augmenter
        self.lambda_offdiag = float(lambda_offdiag)
        self.image_size = None if image_size is None else int(image_size)
        self.seed = int(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.invariance_tracker = keras.metrics.Mean(name="invariance")
        self.redundancy_tracker = keras.metrics.Mean(name="redundancy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.invariance_tracker, self.redundancy_tracker]

    def call(self, images, training=False):
        """``z = projector(encoder(images))``: ``(batch, size, size, 3)`` -> ``(batch, D)``."""
        return self.projector(self.encoder(images, training=training), training=training)

    def make_views(self, images, step=0):
        """Two augmented views of a batch with the on-device augmenter, seeded by ``step``.

        Args:
            images: ``(batch, height, width, 3)`` uint8 or float in [0, 1].
            step: an int or scalar tensor (the optimizer step inside ``train_step``).

        Returns:
            ``(x_a, x_b)``, float32 in [0, 1], resized to ``image_size``.
        """
        if self.augmenter is None:
            raise ValueError("This model has no augmenter: feed (x_a, x_b) pairs, e.g. from "
                             "bt_helpers.train.make_dataset(..., augment_on_device=False).")
        ctx = tf.distribute.get_replica_context()
        replica = 0 if ctx is None else ctx.replica_id_in_sync_group
        seed = tf.stack([tf.cast(self.seed + 7919 * replica, tf.int32),
                         tf.cast(step, tf.int32)])
        x_a, x_b = self.augmenter(images, seed=seed)
        return resize_images(x_a, self.image_size), resize_images(x_b, self.image_size)

    def _views(self, data):
        if isinstance(data, (tuple, list)) and len(data) == 1:
            data = data[0]
        if self.augmenter is not None and not isinstance(data, (tuple, list)):
            return self.make_views(data, self.optimizer.iterations)
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ValueError("BarlowTwinsModel expects (x_a, x_b) pairs of views, or image "
                             "batches when it has an augmenter. Received: "
                             f"{type(data).__name__}.")
        x_a, x_b = data
        return (resize_images(tf.cast(x_a, tf.float32), self.image_size),
                resize_images(tf.cast(x_b, tf.float32), self.image_size))

    def compute_terms(self, x_a, x_b, training: bool = True):
        """``bt_helpers.loss.BarlowTwinsTerms`` of two batches of views ``(batch, s, s, 3)``."""
        z_a = self(x_a, training=training)  # (N, D)
        z_b = self(x_b, training=training)  # (N, D)
        return loss_lib.barlow_twins_terms(z_a, z_b, self.lambda_offdiag)

    def train_step(self, data):
        x_a, x_b = self._views(data)
        with tf.GradientTape() as tape:
            terms = self.compute_terms(x_a, x_b, training=True)
            share = loss_lib.scale_for_replicas(terms.loss)
            share = self.optimizer.scale_loss(share)
        variables = self.trainable_variables
        gradients = tape.gradient(share, variables)
        self.optimizer.apply(gradients, variables)
        return self._log(terms)

    def test_step(self, data):
        x_a, x_b = self._views(data)
        return self._log(self.compute_terms(x_a, x_b, training=False))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras' TensorFlow trainer pulls one batch before training and averages it across
        # replicas to build the model symbolically; MultiWorkerMirroredStrategy cannot do that
        # reduction eagerly (a PerReplica conversion error). train() builds everything first.
        if self.built and self.optimizer is not None and self.optimizer.built:
            return
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _log(self, terms):
        self.loss_tracker.update_state(terms.loss)
        self.invariance_tracker.update_state(terms.invariance)
        self.redundancy_tracker.update_state(terms.redundancy)
        logs = {m.name: m.result() for m in self.metrics}
        logs.update(step_loss=terms.loss, step_invariance=terms.invariance,
                    step_redundancy=terms.redundancy)
        if _multi_worker(tf.distribute.get_strategy()):
            # Keras 3 averages the outputs of a multi-worker step with
            # strategy.reduce("MEAN", value, axis=0), which fails on scalars
            # (tensorflow/tensorflow#72388); shape (1,) reduces to the same scalar.
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------

def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Full batches per epoch: ``n_images // batch_size`` (the loss needs whole batches)."""
    steps = int(n_images) // int(batch_size)
    if steps < 1:
        raise ValueError(f"batch_size={batch_size} is larger than the {n_images} training "
                         "images: not one full batch per epoch. Lower batch_size or use more "
                         "images.")
    return steps


def make_dataset(images, preset, seed: int = 0, initial_epoch: int = 0,
                 epochs: Optional[int] = None, augment_on_device: Optional[bool] = None,
                 recipe: Optional[str] = None):
    """The training pipeline: global batches of epochs ``initial_epoch .. epochs - 1``.

    Epoch ``e`` visits the images in the order ``stateless_shuffle(range(n), seed=(seed, e))``
    and drops the last partial batch; step ``s`` (counted from the start of training) makes its
    views with the seed ``(seed + 1, s)``. Everything is a pure function of ``(seed, epoch,
    step)``, which is what makes resuming exact.

    Args:
        images: ``(N, height, width, 3)`` uint8 training images.
        preset: a ``bt_helpers.config.Preset`` (``batch_size``, ``epochs``, ``recipe``,
            ``augment_on_device``, ``image_size``).
        seed: seed of the order and the views. Defaults to 0.
        initial_epoch: first epoch to produce. Defaults to 0.
        epochs: one past the last epoch. Defaults to ``preset.epochs``.
        augment_on_device: yield image batches (the model augments them) instead of view
            pairs. Defaults to ``preset.augment_on_device``.
        recipe: augmentation recipe. Defaults to ``preset.recipe``.

    Returns:
        A ``tf.data.Dataset`` of ``(x_a, x_b)`` float32 pairs ``(batch, size, size, 3)``, or
        of uint8 image batches when ``augment_on_device``.
    """
    from bt_helpers import augment

    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError("make_dataset expects uint8 images of shape (N, height, width, 3); "
                         f"received dtype={images.dtype}, shape={images.shape}.")
    n = len(images)
    batch = int(preset.batch_size)
    steps = steps_per_epoch(n, batch)
    epochs = preset.epochs if epochs is None else int(epochs)
    on_device = preset.augment_on_device if augment_on_device is None else augment_on_device
    stored = tf.constant(images)

    def epoch_indices(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int32), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        batches = tf.reshape(order[:steps * batch], (steps, batch))
        first = tf.cast(epoch * steps, tf.int32)
        return tf.data.Dataset.from_tensor_slices((batches, first + tf.range(steps)))

    ds = tf.data.Dataset.range(int(initial_epoch), epochs).flat_map(epoch_indices)
    if on_device:
        ds = ds.map(lambda idx, step: tf.gather(stored, idx), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        views = augment.make_two_views(recipe or preset.recipe, seed=seed)
        size = int(preset.image_size)

        def make_pair(idx, step):
            x_a, x_b = views(tf.gather(stored, idx), seed=tf.stack([seed + 1, step]))
            return resize_images(x_a, size), resize_images(x_b, size)

        ds = ds.map(make_pair, num_parallel_calls=tf.data.AUTOTUNE)
    # One thread per op, whole batches in parallel: cheaper than splitting each small op
    # (``python benchmarks/bench_augment.py --intra-op 0`` compares).
    options = tf.data.Options()
    options.threading.max_intra_op_parallelism = 1
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def distribute_dataset(strategy, make, batch_size: int):
    """Give every replica its slice of each global batch: the same rows as on one device.

    Each input pipeline (one per worker) builds the global batches with ``make()`` and keeps
    the rows of its replicas; replica ``r`` gets rows ``r * b .. (r + 1) * b - 1`` with
    ``b = batch_size / replicas``. So a run on ``R`` replicas sees exactly the batches of a
    single-device run (the multi-worker test relies on it). With views made in ``tf.data``,
    each worker augments the whole global batch and keeps its slice: exact, and cheap next to
    the network on the GPUs where several workers make sense; with ``augment_on_device``
    only images travel and each replica augments its own rows.

    Args:
        strategy: a ``tf.distribute.Strategy``.
        make: ``() -> tf.data.Dataset`` of global batches (tensors or tuples of tensors).
        batch_size: the global batch size; must be divisible by the number of replicas.

    Returns:
        ``make()`` itself for one replica, else a distributed dataset for ``Model.fit``.
    """
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return make()
    if batch_size % replicas:
        raise ValueError(f"batch_size={batch_size} must be divisible by the {replicas} "
                         "replicas, so that every replica gets the same number of rows.")
    per_replica = batch_size // replicas

    def dataset_fn(ctx: tf.distribute.InputContext):
        local = ctx.num_replicas_in_sync // ctx.num_input_pipelines
        start = ctx.input_pipeline_id * local * per_replica

        def split(*tensors):
            parts = tuple(tf.reshape(t[start:start + local * per_replica],
                                     [local, per_replica] + t.shape.as_list()[1:])
                          for t in tensors)
            return tf.data.Dataset.from_tensor_slices(parts if len(parts) > 1 else parts[0])

        return make().flat_map(split).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(dataset_fn)


# ------------------------------------------------------------------------------------------------
# devices and strategies
# ------------------------------------------------------------------------------------------------

def make_strategy(kind: str = "auto"):
    """A ``tf.distribute`` strategy.

    Args:
        kind: ``"auto"`` (``"multi_worker"`` when ``TF_CONFIG`` is set, ``"mirrored"`` with
            more than one GPU, else ``"default"``), ``"default"``, ``"mirrored"`` or
            ``"multi_worker"``. Defaults to ``"auto"``.

    Returns:
        The strategy. ``MultiWorkerMirroredStrategy`` must be created before any other
        TensorFlow operation of the program runs.
    """
    if kind == "auto":
        if os.environ.get("TF_CONFIG", "").strip():
            kind = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy kind {kind!r}; expected 'auto', 'default', 'mirrored' "
                     "or 'multi_worker'.")


def _multi_worker(strategy) -> bool:
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())


def is_chief(strategy=None) -> bool:
    """Whether this process writes files: always, except non-chief workers of a multi-worker run."""
    strategy = strategy or tf.distribute.get_strategy()
    return bool(getattr(strategy.extended, "should_checkpoint", True))


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (x86 ``avx512_bf16`` or ``amx_bf16`` flags).

    Only then is mixed precision worth it on a CPU: with those instructions oneDNN runs the
    convolutions and matrix products in bfloat16 (on the 2-core machine the course was
    measured on, ``benchmarks/bench_train.py``: 1.26x the float32 rate of the ``teaching``
    step, 1.23x on the 2021 example's network); without them bfloat16 is emulated and slower
    than float32.
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:  # not Linux
        pass
    return False


def _gpu_compute_capability():
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    try:
        return tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
    except Exception:  # noqa: BLE001 -- details are best effort
        return None


def use_gpu_features(preset, mixed_precision=None, jit_compile=None) -> tuple:
    """``(mixed_precision, jit_compile)`` for this machine.

    Mixed precision, when ``preset.mixed_precision`` asks for it: ``"bfloat16"`` on GPUs that
    compute it natively (compute capability 8.0 or more: A100, H100, L4, RTX 30xx...),
    ``"float16"`` (with loss scaling) on older GPUs such as Colab's T4, ``"bfloat16"`` on a
    CPU with native bfloat16 (:func:`cpu_has_native_bfloat16`), and ``None`` (float32)
    elsewhere. XLA (``preset.jit_compile``) on a GPU only: on the CPU it made the step about
    2.5x slower here. Explicit arguments win: ``mixed_precision`` may be ``None`` (decide as
    above), ``False``, ``True`` (``"bfloat16"``), ``"bfloat16"`` or ``"float16"``.

    Returns:
        ``(None | "bfloat16" | "float16", bool)``.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if mixed_precision is None:
        mp = None
        if preset.mixed_precision:
            if gpus:
                cc = _gpu_compute_capability()
                mp = "float16" if cc is not None and tuple(cc) < (8, 0) else "bfloat16"
            elif cpu_has_native_bfloat16():
                mp = "bfloat16"
    else:
        mp = "bfloat16" if mixed_precision is True else (mixed_precision or None)
    if mp not in (None, "bfloat16", "float16"):
        raise ValueError("`mixed_precision` must be None, a bool, 'bfloat16' or 'float16'. "
                         f"Received: mixed_precision={mixed_precision!r}")
    xla = (preset.jit_compile and bool(gpus)) if jit_compile is None else bool(jit_compile)
    return mp, xla


def _all_layers(layer):
    for child in getattr(layer, "layers", []):
        yield child
        yield from _all_layers(child)


def synchronize_batch_norm(model) -> int:
    """Make every ``BatchNormalization`` of ``model`` (nested models too) synchronised.

    Under a ``tf.distribute`` strategy with several replicas, a synchronised BatchNorm
    computes its batch statistics over the global batch, as one device would (Keras reads the
    ``synchronized`` attribute when the layer is called, so switching it after building works).

    Returns:
        How many layers were switched.
    """
    count = 0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized:
            layer.synchronized = True
            count += 1
    return count


# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------

def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is always either old or new, never partial.

    Writes a temporary file in the same folder, flushes it to disk, then ``os.replace``\\ s it
    over ``path`` (atomic on POSIX and Windows).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def _variable_groups(model, optimizer) -> dict:
    return {"encoder": list(model.encoder.weights), "projector": list(model.projector.weights),
            "optimizer": list(optimizer.variables)}


def save_checkpoint(path, model, optimizer, meta: dict) -> None:
    """Atomically write weights, optimizer state and ``meta`` (JSON) to one ``.npz`` file.

    Args:
        path: the checkpoint file, e.g. ``run_dir / "checkpoint.npz"``.
        model: a :class:`BarlowTwinsModel` (its encoder's and projector's weights are saved,
            BatchNorm statistics included).
        optimizer: its built optimizer (every variable: step counter, momentum buffers...).
        meta: JSON-serialisable facts (epoch, history...), stored as ``meta.json``.
    """
    arrays = {}
    paths = {}
    for group, variables in _variable_groups(model, optimizer).items():
        paths[group] = [v.path for v in variables]
        for i, v in enumerate(variables):
            arrays[f"{group}/{i:05d}"] = np.asarray(v.numpy())
    meta = dict(meta, format=CHECKPOINT_FORMAT, variables=paths)
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint_meta(path) -> dict:
    """The ``meta`` dict of a checkpoint written by :func:`save_checkpoint`."""
    with np.load(path) as data:
        return json.loads(bytes(data["meta.json"]).decode("utf-8"))


def load_checkpoint(path, model, optimizer=None) -> dict:
    """Restore what :func:`save_checkpoint` wrote; returns its ``meta``.

    Args:
        path: the ``.npz`` file.
        model: a :class:`BarlowTwinsModel` (or anything with ``encoder`` and ``projector``)
            built exactly as the saved one.
        optimizer: the optimizer to restore, built on ``model.trainable_variables``; ``None``
            restores the weights only.

    Raises:
        ValueError: a checkpoint of another format, or variables whose number or shapes
            differ from the model's (the message names the first mismatch).
    """
    with np.load(path) as data:
        meta = json.loads(bytes(data["meta.json"]).decode("utf-8"))
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} has checkpoint format {meta.get('format')!r}; this "
                             f"version of bt_helpers reads format {CHECKPOINT_FORMAT}.")
        groups = _variable_groups(model, optimizer) if optimizer is not None else {
            "encoder": list(model.encoder.weights), "projector": list(model.projector.weights)}
        for group, variables in groups.items():
            saved = meta["variables"][group]
            if len(saved) != len(variables):
                raise ValueError(f"{path}: the checkpoint has {len(saved)} {group} variables, "
                                 f"the model {len(variables)}. Was it written for another "
                                 "preset? Use another --out folder.")
            for i, v in enumerate(variables):
                value = data[f"{group}/{i:05d}"]
                if tuple(value.shape) != tuple(v.shape):
                    raise ValueError(f"{path}: {group} variable {saved[i]} has shape "
                                     f"{value.shape} in the checkpoint but {tuple(v.shape)} in "
                                     "the model. Was it written for another preset?")
                v.assign(value)
    return meta


# ------------------------------------------------------------------------------------------------
# callbacks
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class RunState:
    """What the callbacks share during :func:`train`: the history so far and the run folder."""

    run_dir: Optional[Path]
    steps_per_epoch: int
    batch_size: int
    epochs: int
    history: list = dataclasses.field(default_factory=list)
    steps: list = dataclasses.field(default_factory=list)
    diverged: Optional[str] = None
    stopped_early: Optional[int] = None
    train_end: float = 0.0
    batches_this_epoch: int = 0
    knn_seconds: Optional[float] = None
    batch_start: float = 0.0
    epoch: int = 0
    first_step: Optional[tuple] = None  # (epoch, seconds) of this call's first step (tracing)
    last_checkpoint_epoch: Optional[int] = None
    epoch_start: float = 0.0

    @property
    def checkpoint_path(self) -> Optional[Path]:
        return None if self.run_dir is None else self.run_dir / CHECKPOINT_NAME


def _lr_at(optimizer, step: int) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    lr = inner._learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return float(lr(step))
    return float(keras.ops.convert_to_numpy(inner.learning_rate))


class StepLogger(keras.callbacks.Callback):
    """Records each step's loss terms and learning rate; stops at the first NaN/inf loss.

    Every ``every`` steps it reads ``step_loss``, ``step_invariance``, ``step_redundancy``
    from ``train_step`` (a device-to-host copy) into ``state.steps``. A loss that is not finite
    stops training after that step and records which step it was; :func:`train` then raises
    :class:`TrainingDivergedError` naming it and the last good checkpoint. With ``every > 1``
    the epoch's running mean is checked too, so a NaN between two logged steps is still caught
    (the message then gives the range of steps).
    """

    def __init__(self, state: RunState, every: int = 1):
        super().__init__()
        self.state = state
        self.every = max(1, int(every))

    def on_epoch_begin(self, epoch, logs=None):
        self.state.epoch_start = time.perf_counter()
        self.state.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.state.batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self.state.train_end = time.perf_counter()
        if self.state.first_step is None:  # includes tracing the step function
            self.state.first_step = (self.state.epoch, self.state.train_end -
                                     self.state.batch_start)
        self.state.batches_this_epoch = batch + 1
        step = int(self.model.optimizer.iterations.numpy())  # steps done, this one included
        if step % self.every and batch + 1 != self.state.steps_per_epoch:
            return
        values = {k: float(logs[f"step_{k}"]) for k in ("loss", "invariance", "redundancy")
                  if f"step_{k}" in logs}
        epoch = (step - 1) // self.state.steps_per_epoch + 1
        if values:
            self.state.steps.append(dict(step=step, epoch=epoch, **values,
                                         lr=_lr_at(self.model.optimizer, step - 1)))
        bad = values.get("loss")
        mean = float(logs.get("loss", 0.0))
        if bad is not None and not math.isfinite(bad):
            where = f"step {step} (epoch {epoch})"
        elif not math.isfinite(mean):
            where = f"a step between {max(step - self.every, 0) + 1} and {step} (epoch {epoch})"
        else:
            return
        value = bad if bad is not None and not math.isfinite(bad) else mean
        self.state.diverged = f"the loss became {value} at {where}"
        self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for key in [k for k in logs if k.startswith("step_")]:
            logs.pop(key)  # per-step values stay out of the epoch logs (History, TensorBoard)


class ProgressBar(keras.callbacks.Callback):
    """A tqdm progress bar per epoch (a widget in a notebook, text in a terminal).

    Shows the running loss and its two terms and the throughput in image pairs per second, and
    prints one summary line per epoch (with the kNN accuracy when there is one).
    """

    def __init__(self, state: RunState, refresh_every: int = 1):
        super().__init__()
        self.state = state
        self.refresh_every = max(1, int(refresh_every))
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.state.steps_per_epoch, desc=f"epoch {epoch + 1}/"
                        f"{self.state.epochs}", unit="step", leave=False, dynamic_ncols=True)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is None:
            return
        self.bar.update(1)
        if (batch + 1) % self.refresh_every == 0 and logs:
            elapsed = max(time.perf_counter() - self.state.epoch_start, 1e-9)
            self.bar.set_postfix(loss=f"{float(logs['loss']):.1f}",
                                 inv=f"{float(logs['invariance']):.1f}",
                                 red=f"{float(logs['redundancy']):.1f}",
                                 pairs_s=f"{(batch + 1) * self.state.batch_size / elapsed:.0f}",
                                 refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.state.diverged:
            return
        row = self.state.history[-1] if self.state.history and \
            self.state.history[-1]["epoch"] == epoch + 1 else _epoch_row(self, epoch, logs)
        knn = row.get("knn_accuracy")
        knn = "" if knn is None or (isinstance(knn, float) and math.isnan(knn)) else \
            f" · kNN accuracy {knn:.1%}"
        print(f"epoch {epoch + 1}/{self.state.epochs} · loss {row['loss']:.1f} (invariance "
              f"{row['invariance']:.1f} + redundancy {row['redundancy']:.1f}){knn} · "
              f"{row['seconds']:.0f} s, {row['pairs_per_second']:.0f} pairs/s", flush=True)


def _epoch_row(callback, epoch, logs) -> dict:
    """The history row of an epoch.

    ``seconds`` is the wall time of the epoch's training steps (no kNN monitor);
    ``pairs_per_second`` leaves out the first step of a ``train`` call, which also traces and
    compiles the step function (``trace_seconds``).
    """
    logs = logs or {}
    state = callback.state
    seconds = max(state.train_end - state.epoch_start, 1e-9)
    steady_seconds, steady_batches, trace = seconds, state.batches_this_epoch, None
    if state.first_step is not None and state.first_step[0] == epoch and steady_batches > 1:
        trace = state.first_step[1]
        steady_seconds, steady_batches = max(seconds - trace, 1e-9), steady_batches - 1
    step = int(callback.model.optimizer.iterations.numpy())
    knn = logs.get("knn_accuracy")
    return dict(epoch=epoch + 1, step=step, loss=float(logs.get("loss", float("nan"))),
                invariance=float(logs.get("invariance", float("nan"))),
                redundancy=float(logs.get("redundancy", float("nan"))),
                knn_accuracy=None if knn is None else float(knn),
                lr=_lr_at(callback.model.optimizer, max(step - 1, 0)), seconds=seconds,
                pairs_per_second=steady_batches * state.batch_size / steady_seconds,
                knn_seconds=None if knn is None else state.knn_seconds, trace_seconds=trace)


class KNNMonitor(keras.callbacks.Callback):
    """kNN accuracy of the encoder's features on a held-out split, every ``every`` epochs.

    Features of a labelled bank (training images) and of the held-out images are extracted
    with the encoder in inference mode (``bt_helpers.evaluate.extract_features``) and each
    held-out image is classified by its ``k`` nearest bank features
    (``bt_helpers.evaluate.knn_accuracy``: cosine similarity, weighted vote). The accuracy goes
    into the epoch logs as ``knn_accuracy`` (so into the history, the CSV and TensorBoard).
    The last epoch is always monitored.

    Args:
        bank_images, bank_labels: ``(M, h, w, 3)`` uint8 labelled images and ``(M,)`` labels.
        val_images, val_labels: the held-out images and labels.
        every: monitor every this many epochs (>= 1).
        epochs: total epochs of the run (to always monitor the last one).
        image_size: side the images are resized to before the encoder (``None``: as is).
        k: neighbours. Defaults to 200 (as in the SSL literature).
    """

    def __init__(self, bank_images, bank_labels, val_images, val_labels, every: int = 1,
                 epochs: Optional[int] = None, image_size: Optional[int] = None, k: int = 200,
                 state: Optional[RunState] = None):
        super().__init__()
        self.bank = (np.asarray(bank_images), np.asarray(bank_labels))
        self.val = (np.asarray(val_images), np.asarray(val_labels))
        self.every = max(1, int(every))
        self.epochs = epochs
        self.image_size = image_size
        self.k = int(k)
        self.state = state

    def accuracy(self) -> float:
        """kNN accuracy of the current encoder on the held-out split."""
        from bt_helpers import evaluate

        encoder = encoder_for_images(self.model.encoder, self.image_size)
        bank = evaluate.extract_features(encoder, self.bank[0], verbose=False)
        val = evaluate.extract_features(encoder, self.val[0], verbose=False)
        k = min(self.k, len(bank))
        return evaluate.knn_accuracy(bank, self.bank[1], val, self.val[1], k=k)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or (self.state is not None and self.state.diverged):
            return
        last = self.epochs is not None and epoch + 1 == self.epochs
        if (epoch + 1) % self.every == 0 or last or self.model.stop_training:
            start = time.perf_counter()
            logs["knn_accuracy"] = self.accuracy()
            if self.state is not None:
                self.state.knn_seconds = time.perf_counter() - start


class TimeBudget(keras.callbacks.Callback):
    """Stops training once ``seconds`` of wall time have passed (checked after every step).

    The epoch in progress ends early (the checkpoint of the last complete epoch stays);
    ``state.stopped_early`` records the step. The learning-rate schedule is not shortened:
    size ``epochs`` to the budget (``python benchmarks/bench_train.py`` does) so that the
    cosine decay ends near it.
    """

    def __init__(self, seconds: float, state: RunState):
        super().__init__()
        self.seconds = float(seconds)
        self.state = state
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() - self.start > self.seconds:
            self.state.stopped_early = int(self.model.optimizer.iterations.numpy())
            self.model.stop_training = True


class Checkpointer(keras.callbacks.Callback):
    """At each epoch's end: the epoch's history row, an atomic checkpoint, the CSV logs.

    Never saves after a NaN/inf loss (the last good checkpoint stays). Only the chief process
    of a multi-worker run writes files.
    """

    def __init__(self, state: RunState, run_meta: dict, write: bool = True):
        super().__init__()
        self.state = state
        self.run_meta = run_meta
        self.write = write

    def on_epoch_end(self, epoch, logs=None):
        if self.state.diverged:
            return
        logs = logs or {}
        if not (math.isfinite(float(logs.get("loss", 0.0)))):
            self.state.diverged = f"the mean loss of epoch {epoch + 1} is {logs.get('loss')}"
            self.model.stop_training = True
            return
        self.state.history.append(_epoch_row(self, epoch, logs))
        if self.state.stopped_early is not None and \
                self.state.stopped_early % self.state.steps_per_epoch:
            self.state.history[-1]["partial"] = True
            return  # a partial epoch (time budget): the last complete one stays the checkpoint
        if self.state.run_dir is None or not self.write:
            self.state.last_checkpoint_epoch = epoch + 1
            return
        meta = dict(self.run_meta, epoch=epoch + 1,
                    step=int(self.model.optimizer.iterations.numpy()),
                    history=self.state.history, steps=self.state.steps,
                    saved=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
        save_checkpoint(self.state.checkpoint_path, self.model, self.model.optimizer, meta)
        self.state.last_checkpoint_epoch = epoch + 1
        write_csv_logs(self.state.run_dir, self.state.history, self.state.steps)


def _csv_bytes(rows, fields) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    return out.getvalue().encode("utf-8")


def write_csv_logs(run_dir, history, steps) -> None:
    """(Re)write ``history.csv`` and ``steps.csv`` atomically from the checkpointed history."""
    run_dir = Path(run_dir)
    atomic_write_bytes(run_dir / HISTORY_CSV, _csv_bytes(history, HISTORY_FIELDS))
    atomic_write_bytes(run_dir / STEPS_CSV, _csv_bytes(steps, STEP_FIELDS))


# ------------------------------------------------------------------------------------------------
# the whole run
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained :class:`BarlowTwinsModel` (``model.encoder`` is the backbone).
        history: one dict per epoch (``HISTORY_FIELDS``), resumed epochs included.
        steps: one dict per logged step (``STEP_FIELDS``).
        run_dir: the run folder, or ``None``.
        initial_epoch: the epoch this call started from (0 for a fresh run).
        seconds: wall time of this call's training.
    """

    model: BarlowTwinsModel
    history: list
    steps: list
    run_dir: Optional[Path]
    initial_epoch: int
    seconds: float

    @property
    def encoder(self):
        """The trained encoder (``images -> features``)."""
        return self.model.encoder

    def series(self, key: str, source: str = "history") -> tuple:
        """``(x, values)`` numpy arrays for plotting: epochs (or steps) and one field."""
        rows = self.history if source == "history" else self.steps
        x_key = "epoch" if source == "history" else "step"
        rows = [r for r in rows if r.get(key) is not None]
        return (np.array([r[x_key] for r in rows]),
                np.array([r[key] for r in rows], dtype=float))


def _preset_dict(preset) -> dict:
    d = dataclasses.asdict(preset)
    d["proj_dims"] = list(d["proj_dims"])
    return d


def preset_from_dict(d: dict):
    """The :class:`bt_helpers.config.Preset` saved in a ``run.json`` or checkpoint."""
    from bt_helpers.config import Preset

    d = dict(d)
    d["proj_dims"] = tuple(d["proj_dims"])
    return Preset(**d)


def _check_resume(saved: dict, preset) -> None:
    current = _preset_dict(preset)
    diff = sorted(k for k in current if k != "epochs" and saved.get(k) != current[k])
    if diff:
        pairs = ", ".join(f"{k}: saved {saved.get(k)!r}, now {current[k]!r}" for k in diff)
        raise ValueError(f"The run folder holds a checkpoint of another configuration ({pairs}). "
                         "Resume with the same preset, start again with resume=False "
                         "(--no-resume), or choose another folder (--out).")


def build_model(preset, seed: int = 0, strategy=None, mixed_precision: Optional[str] = None):
    """The :class:`BarlowTwinsModel` a preset describes (in ``strategy``'s scope if given).

    The encoder and projector are ``bt_helpers.models.build_from_preset(preset, seed,
    any_size=True)``'s: the same initial weights as without ``any_size``, and an encoder that
    takes images of any size: pretraining resizes its views to ``preset.image_size``, and
    evaluation (:func:`encoder_for_images`) feeds it the stored images at their own resolution.

    Under a float16/bfloat16 policy the layers compute in low precision and keep float32
    weights; the loss is computed in float32 (``bt_helpers.loss``). With several replicas every
    BatchNorm is synchronised.
    """
    from bt_helpers import augment, models

    strategy = strategy or tf.distribute.get_strategy()
    previous = keras.mixed_precision.global_policy()
    if mixed_precision:
        keras.mixed_precision.set_global_policy(f"mixed_{mixed_precision}")
    try:
        with strategy.scope():
            net = models.build_from_preset(preset, seed=seed, any_size=True)
            augmenter = (augment.make_two_views(preset.recipe, seed=seed)
                         if preset.augment_on_device else None)
            model = BarlowTwinsModel(net.encoder, net.projector, preset.lambda_offdiag,
                                     augmenter=augmenter, image_size=preset.image_size,
                                     seed=seed + 1)
            if strategy.num_replicas_in_sync > 1:
                synchronize_batch_norm(net.encoder)
                synchronize_batch_norm(net.projector)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return model


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package (needed to write TensorBoard logs) is installed."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def encoder_for_images(encoder, image_size: Optional[int]):
    """What to feed the stored images to, for evaluation (kNN monitor, linear probe).

    An encoder that accepts any image size (the one :func:`build_model` makes) is returned
    as it is: it sees the whole stored image at its own resolution even when pretraining
    used smaller views (``preset.image_size``). Random-resized crops of a low-resolution view
    show objects larger than a full image at that resolution would; the full image at a higher
    resolution restores a similar apparent size (the "FixRes" effect, Touvron et al., 2019).
    ``python benchmarks/bench_train.py teaching`` measures both for the teaching preset.
    An encoder with a fixed input size gets a wrapper that resizes the images to
    ``image_size`` first.

    Args:
        encoder: a Keras model, ``(batch, h, w, 3)`` float images in [0, 1] -> ``(batch, F)``.
        image_size: the side the encoder was built for, or ``None`` (no resizing).

    Returns:
        ``encoder`` itself, or a function ``(images, training=False) -> features``.
    """
    flexible = hasattr(encoder, "input") and encoder.input.shape[1] is None
    if image_size is None or flexible:
        return encoder

    def call(images, training=False):
        return encoder(resize_images(tf.cast(images, tf.float32), image_size),
                       training=training)

    return call


def train(preset, images, out_dir=None, *, epochs: Optional[int] = None, seed: int = 0,
          resume: bool = True, strategy=None, knn_every: Optional[int] = None,
          knn_bank_size: int = KNN_BANK_SIZE, mixed_precision: Optional[bool] = None,
          jit_compile: Optional[bool] = None, callbacks: Sequence = (), verbose: bool = True,
          log_every: int = 1, tensorboard: bool = True, export: bool = True,
          time_budget_s: Optional[float] = None) -> TrainResult:
    """Pretrain a Barlow Twins network as ``preset`` says; resumable.

    Args:
        preset: a ``bt_helpers.config.Preset``.
        images: a ``bt_helpers.data.ImageData`` (``x_train`` for pretraining; ``x_val`` /
            ``y_val`` and part of ``x_train`` / ``y_train`` for the kNN monitor).
        out_dir: run folder for the checkpoint and logs (created if needed); ``None`` keeps
            everything in memory. Defaults to None.
        epochs: overrides ``preset.epochs`` (the schedule is sized to it). Defaults to None.
        seed: seed of the initial weights, the data order and the augmentation. Defaults to 0.
        resume: continue from ``out_dir/checkpoint.npz`` when it exists. Defaults to True.
        strategy: a ``tf.distribute`` strategy; ``None`` uses :func:`make_strategy`.
        knn_every: kNN monitor period in epochs (0: off). Defaults to ``preset.knn_every``.
        knn_bank_size: training images in the kNN bank (a seeded subset). Defaults to 10,000.
        mixed_precision, jit_compile: ``None`` follows :func:`use_gpu_features`.
        callbacks: more Keras callbacks.
        verbose: progress bar and one line per epoch. Defaults to True.
        log_every: record the per-step loss terms every this many steps. Defaults to 1.
        tensorboard: write TensorBoard logs to ``out_dir/tensorboard``. Defaults to True.
        export: save ``out_dir/encoder.keras`` at the end. Defaults to True.
        time_budget_s: stop after this many seconds of training (:class:`TimeBudget`; the
            partial epoch is not checkpointed). Defaults to None (no limit).

    Returns:
        A :class:`TrainResult`.

    Raises:
        TrainingDivergedError: the loss became NaN or inf (the message names the step and the
            last good checkpoint, which is left untouched).
        ValueError: a checkpoint in ``out_dir`` from another configuration, or bad sizes.
    """
    from bt_helpers import optim

    if epochs is not None:
        preset = preset.replace(epochs=int(epochs), warmup_epochs=min(preset.warmup_epochs,
                                                                      int(epochs)))
    strategy = strategy or make_strategy()
    chief = is_chief(strategy)
    mp, xla = use_gpu_features(preset, mixed_precision, jit_compile)
    x_train = np.asarray(images.x_train)
    if x_train.shape[1] != x_train.shape[2]:
        raise ValueError(f"Expected square training images; received shape {x_train.shape}.")
    steps = steps_per_epoch(len(x_train), preset.batch_size)
    run_dir = None if out_dir is None else Path(out_dir)
    meta, initial_epoch = None, 0
    run_meta = dict(preset=_preset_dict(preset), seed=int(seed), steps_per_epoch=steps)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in run_dir.glob(".*.tmp-*"):  # left by a killed writer; never read
            stale.unlink(missing_ok=True)
        ckpt = run_dir / CHECKPOINT_NAME
        if resume and ckpt.exists():
            meta = read_checkpoint_meta(ckpt)
            _check_resume(meta["preset"], preset)
            initial_epoch = int(meta["epoch"])
            if meta["preset"]["epochs"] != preset.epochs and verbose:
                print(f"Note: the run was started for {meta['preset']['epochs']} epochs and "
                      f"continues for {preset.epochs}; the learning-rate schedule is "
                      "stretched to the new length from here on.", flush=True)
        run_meta["data"] = getattr(images, "origin", None) or "arrays"
        if chief and meta is None:
            atomic_write_bytes(run_dir / RUN_CONFIG_NAME, json.dumps(dict(
                run_meta, created=datetime.datetime.now().astimezone().isoformat(
                    timespec="seconds"), tensorflow=tf.__version__, keras=keras.__version__),
                indent=2).encode("utf-8"))

    if tensorboard and not tensorboard_available():
        if verbose and run_dir is not None:
            print("Note: the `tensorboard` package is not installed, so no TensorBoard logs "
                  "(the CSV logs are written); `pip install tensorboard` to get them.")
        tensorboard = False
    keras.utils.set_random_seed(seed)
    model = build_model(preset, seed=seed, strategy=strategy, mixed_precision=mp)
    with strategy.scope():
        optimizer = optim.make_optimizer(preset, steps)
        if mp == "float16":  # float16 gradients underflow: scale the loss up, then back
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(optimizer=optimizer, jit_compile=xla)
        optimizer.build(model.trainable_variables)
        model.built = True  # encoder and projector are built; see _maybe_symbolic_build
    state = RunState(run_dir, steps, preset.batch_size, preset.epochs)
    if meta is not None:
        load_checkpoint(run_dir / CHECKPOINT_NAME, model, optimizer)
        state.history = list(meta.get("history", []))
        state.steps = list(meta.get("steps", []))
        state.last_checkpoint_epoch = initial_epoch
        if verbose:
            print(f"Resuming from {run_dir / CHECKPOINT_NAME}: epoch {initial_epoch} of "
                  f"{preset.epochs} done, optimizer step {int(optimizer.iterations.numpy())}.",
                  flush=True)
    if verbose and run_dir is not None and chief:
        print(f"Run folder {run_dir}: checkpoint {CHECKPOINT_NAME} (every epoch), logs "
              f"{HISTORY_CSV}, {STEPS_CSV}" + (f", {TENSORBOARD_DIR}/" if tensorboard else "")
              + (f"; the encoder goes to {ENCODER_NAME} at the end." if export else "."),
              flush=True)

    if verbose and chief:
        print(f"Training on {strategy.num_replicas_in_sync} replica(s) "
              f"({type(strategy).__name__}), computing in "
              f"{'mixed ' + mp if mp else 'float32'}, XLA {'on' if xla else 'off'}, "
              f"{steps} steps of {preset.batch_size} image pairs per epoch.", flush=True)
    start = time.perf_counter()
    if initial_epoch < preset.epochs:
        knn_every = preset.knn_every if knn_every is None else int(knn_every)
        cbs = [StepLogger(state, every=log_every)]
        if time_budget_s is not None:
            cbs.append(TimeBudget(time_budget_s, state))
        if knn_every and images.x_val is not None and len(images.x_val):
            rng = np.random.default_rng(seed)
            bank = rng.permutation(len(x_train))[:min(knn_bank_size, len(x_train))]
            cbs.append(KNNMonitor(x_train[bank], np.asarray(images.y_train)[bank],
                                  images.x_val, images.y_val, every=knn_every,
                                  epochs=preset.epochs, image_size=preset.image_size,
                                  state=state))
        cbs.append(Checkpointer(state, run_meta, write=chief))
        if verbose:
            cbs.append(ProgressBar(state))
        if tensorboard and run_dir is not None and chief:
            cbs.append(keras.callbacks.TensorBoard(str(run_dir / TENSORBOARD_DIR),
                                                   write_graph=False, update_freq="epoch"))
        cbs.extend(callbacks)

        def make():
            return make_dataset(x_train, preset, seed=seed, initial_epoch=initial_epoch)

        dataset = distribute_dataset(strategy, make, preset.batch_size)
        model.fit(dataset, epochs=preset.epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=steps, callbacks=cbs, verbose=0, shuffle=False)
    elif verbose:
        print(f"Nothing to do: {run_dir / CHECKPOINT_NAME} already holds all "
              f"{preset.epochs} epochs.", flush=True)
    seconds = time.perf_counter() - start

    if state.diverged:
        if state.run_dir is not None and state.last_checkpoint_epoch:
            last = (f"The last good checkpoint is {state.checkpoint_path} (epoch "
                    f"{state.last_checkpoint_epoch}); it was not overwritten, and running the "
                    "same command again resumes from it.")
        elif state.run_dir is not None:
            last = "No checkpoint was written yet (the first epoch did not finish)."
        else:
            last = "No checkpoint: pass out_dir to keep one per epoch."
        raise TrainingDivergedError(
            f"Training stopped: {state.diverged}. {last} Try a lower learning rate "
            f"(base_lr={preset.base_lr}) or a longer warm-up (warmup_epochs="
            f"{preset.warmup_epochs}).")
    if export and run_dir is not None and chief and initial_epoch < preset.epochs:
        tmp = run_dir / f".tmp-{os.getpid()}-{ENCODER_NAME}"
        with warnings.catch_warnings():  # Keras' saver calls np.array(variable): NumPy 2 warns
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            model.encoder.save(tmp)
        os.replace(tmp, run_dir / ENCODER_NAME)
    return TrainResult(model, state.history, state.steps, run_dir, initial_epoch, seconds)


def load_run(run_dir, strategy=None):
    """Rebuild the :class:`BarlowTwinsModel` of a run folder from its last checkpoint.

    Args:
        run_dir: a folder written by :func:`train` (or ``python -m bt_helpers train``).

    Returns:
        ``(model, meta)``: the model with the checkpoint's weights (no optimizer) and the
        checkpoint's meta dict (``preset``, ``epoch``, ``history``, ``steps``...).
    """
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"No {CHECKPOINT_NAME} in {run_dir}: train first, e.g. "
                                f"`python -m bt_helpers train --out {run_dir}`.")
    meta = read_checkpoint_meta(path)
    preset = preset_from_dict(meta["preset"])
    model = build_model(preset, seed=int(meta.get("seed", 0)), strategy=strategy)
    load_checkpoint(path, model)
    return model, meta


def load_encoder(run_dir):
    """The trained encoder of a run folder, ready for ``bt_helpers.evaluate``.

    Reads the last complete checkpoint (``run_dir/checkpoint.npz``), so it works during a
    run, after an interruption, and after the end. The encoder maps ``(batch, h, w, 3)`` float
    images in ``[0, 1]`` of any size to ``(batch, F)`` features (call it with
    ``training=False``); pass it to ``evaluate.extract_features(encoder, images)`` with the
    stored images as they are, even when pretraining used smaller views
    (``preset.image_size``; see :func:`encoder_for_images`).

    Args:
        run_dir: a folder written by :func:`train` or ``python -m bt_helpers train``.

    Returns:
        ``(encoder, preset, meta)``: the ``keras.Model``, the run's
        ``bt_helpers.config.Preset`` and the checkpoint meta (``epoch``, ``history``...).

    Raises:
        FileNotFoundError: no checkpoint in ``run_dir`` (the message says how to make one).
    """
    model, meta = load_run(run_dir)
    return model.encoder, preset_from_dict(meta["preset"]), meta
