"""Training benchmarks of issue 5: the training step's throughput, the teaching preset in ten
minutes on a CPU, and the full preset's epoch on a GPU. Each command prints one JSON object.

``pipeline`` -- image pairs per second of one training step, same architecture both sides (the
2021 example's: ImageNet-stem ResNet-34, a 5000-5000-5000 projector, Lamb, batch 512):

* ``example_2021``: the 2021 Keras example ported to Keras 3 as written -- its ``ResNet34``
  (zero-padded 38x38 input, convolutions with biases) and ``build_twin`` projector, its
  ``BarlowLoss`` (``set_diag`` copy, no epsilon) and ``train_step``, ``Lamb()`` with its
  defaults, and its augmentation as ``benchmarks/bench_augment.py`` transcribes it (one image
  per ``tf.data`` map call, two zipped datasets);
* ``package``: ``bt_helpers.train.BarlowTwinsModel`` on the *same* network (the port's encoder
  and projector, split at the pooled features), its batched ``tf.data`` views
  (``augment.TwoViews("original_2021")``, the same operations with the example's parameters),
  ``bt_helpers.loss``, ``Lamb()``, and the precision ``train.use_gpu_features`` picks for
  this machine (bfloat16 on a CPU with native bfloat16, float32 otherwise);
* ``package_float32`` (with ``--float32``): the same in float32, to separate the two gains.

For each: ``augment_ms`` (one batch of views from the ``tf.data`` pipeline alone),
``forward_ms`` (both views through the network and the loss), ``backward_ms`` (the full
compiled step on ready views minus the forward pass: gradients and the optimizer update),
and ``pairs_per_s`` of ``Model.fit`` running its pipeline (median over the timed steps).
Against the arithmetic: ``flops_per_pair`` (two views, forward + backward = 3x the forward
FLOPs of ``models.count_flops``, and the loss's D x D product), ``matmul_peak_gflops`` (a
2048^3 matrix product in float32 and in bfloat16: about the best this machine's
convolutions and dense layers can do), each variant's ``achieved_gflops`` and
``fraction_of_matmul_peak``, and ``pairs_per_s_at_float32_matmul_peak``: the rate no
float32 implementation of this network passes here.

``teaching`` -- pretrain the ``teaching`` preset on 45,000 CIFAR-10 images for ``--minutes``
(10) of wall time, then the linear probe (``bt_helpers.evaluate.linear_probe``) on the frozen
encoder's features (computed in float32) of the 45,000 training images, scored on the 5,000
held-out images; the same probe on the same architecture at random initialisation (the run's
own initial weights). The encoder sees the stored 32x32 images
(``train.encoder_for_images``); when the preset pretrains on smaller views, both are also
probed on images resized to the view size. The number of epochs is sized
to 90% of the budget from a short timed warm-up (not counted), so that the cosine schedule
ends before the budget; a hard stop enforces it.

``gpu`` -- the ``full`` preset on a GPU: seconds per epoch of 50,000 pairs, pairs/s and the
model FLOP utilisation (3 x forward FLOPs per view, 2 views per pair, against the GPU's dense
bfloat16 peak). Skipped without a GPU.

    python benchmarks/bench_train.py pipeline [--batch 512] [--steps 3] [--float32]
    python benchmarks/bench_train.py teaching --data-dir /path/to/cifar10.tar.gz [--minutes 10]
        [--epochs N] [--seed S] [--overrides JSON]
    python benchmarks/bench_train.py gpu [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bt_helpers import loss as loss_lib  # noqa: E402
from bt_helpers import models, train  # noqa: E402


def machine() -> dict:
    info = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "cpu_native_bfloat16": train.cpu_has_native_bfloat16()}
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        info["gpu"] = tf.config.experimental.get_device_details(gpus[0]).get("device_name")
    return info


# ------------------------------------------------------------------------------------------------
# the 2021 example, ported to Keras 3 as written
# ------------------------------------------------------------------------------------------------

def resnet34_2021(shape=(32, 32, 3)) -> keras.Model:
    """The example's ``ResNet34()()``: padded 7x7 stem, biased convolutions, 512 features."""
    layers = keras.layers

    def identity_block(x, filters):
        skip = x
        x = layers.Conv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization(axis=3)(x)
        x = layers.Activation("relu")(x)
        x = layers.Conv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization(axis=3)(x)
        x = layers.Add()([x, skip])
        return layers.Activation("relu")(x)

    def convolutional_block(x, filters):
        skip = x
        x = layers.Conv2D(filters, 3, padding="same", strides=2)(x)
        x = layers.BatchNormalization(axis=3)(x)
        x = layers.Activation("relu")(x)
        x = layers.Conv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization(axis=3)(x)
        skip = layers.Conv2D(filters, 1, strides=2)(skip)
        x = layers.Add()([x, skip])
        return layers.Activation("relu")(x)

    inputs = layers.Input(shape)
    x = layers.ZeroPadding2D((3, 3))(inputs)
    x = layers.Conv2D(64, kernel_size=7, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.MaxPool2D(pool_size=3, strides=2, padding="same")(x)
    filters = 64
    for stage, blocks in enumerate((3, 4, 6, 3)):
        if stage == 0:
            for _ in range(blocks):
                x = identity_block(x, filters)
        else:
            filters *= 2
            x = convolutional_block(x, filters)
            for _ in range(blocks - 1):
                x = identity_block(x, filters)
    x = layers.AveragePooling2D((2, 2), padding="same")(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, x, name="ResNet34")


def projector_2021(input_dim=512, units=5000) -> keras.Model:
    """The example's projector: (Dense - BN - ReLU) x 2, Dense; every Dense with a bias."""
    inputs = keras.Input((input_dim,))
    x = inputs
    for i in range(2):
        x = keras.layers.Dense(units, name=f"projector_dense_{i}")(x)
        x = keras.layers.BatchNormalization(name=f"projector_bn_{i}")(x)
        x = keras.layers.ReLU(name=f"projector_relu_{i}")(x)
    x = keras.layers.Dense(units, name="projector_dense_2")(x)
    return keras.Model(inputs, x, name="projector_2021")


class BarlowLoss2021(keras.losses.Loss):
    """The example's ``BarlowLoss`` (``set_diag`` copy of ``c``, std without epsilon, lambda
    5e-3), as ``benchmarks/bench_loss.py`` transcribes it."""

    def __init__(self):
        super().__init__()
        self.lambda_amt = 5e-3

    def call(self, z_a, z_b):
        import bench_loss

        return bench_loss.example_2021_loss(z_a, z_b, self.lambda_amt)


class BarlowModel2021(keras.Model):
    """The example's ``BarlowModel``: its ``train_step``, one network for both views."""

    def __init__(self, network, loss_fn):
        super().__init__()
        self.network = network
        self.loss_fn = loss_fn
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def forward(self, y_a, y_b):
        return self.loss_fn(self.network(y_a, training=True), self.network(y_b, training=True))

    def train_step(self, batch):
        y_a, y_b = batch
        with tf.GradientTape() as tape:
            loss = self.forward(y_a, y_b)
        grads = tape.gradient(loss, self.network.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.network.trainable_variables))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


# ------------------------------------------------------------------------------------------------
# pipeline: timing helpers
# ------------------------------------------------------------------------------------------------

def _median_ms(fn, args, repeats):
    fn(*args)  # trace / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        float(tf.reduce_sum(tf.cast(tf.nest.flatten(out)[0], tf.float32)))  # wait for it
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _augment_ms(dataset, batches):
    iterator = iter(dataset)
    next(iterator)  # trace / fill the prefetch buffer
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        view_a, _ = next(iterator)
        float(view_a[0, 0, 0, 0])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


class _StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []
        self.last = None

    def on_train_batch_begin(self, batch, logs=None):
        self.last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])
        self.times.append(time.perf_counter() - self.last)


def _fit_pairs_per_s(model, dataset, steps, batch_size):
    timer = _StepTimer()
    model.fit(dataset, epochs=1, steps_per_epoch=steps + 1, callbacks=[timer], verbose=0,
              shuffle=False)
    seconds = statistics.median(timer.times[1:])  # the first step traces the function
    return batch_size / seconds, [round(t, 2) for t in timer.times]


def matmul_peak_gflops(dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an ``n x n x n`` matrix product in ``dtype``: about the best this machine's
    convolutions and dense layers can do (best of ``repeats``, after one warm-up)."""
    a = tf.random.stateless_normal((n, n), seed=(0, 1), dtype=tf.float32)
    b = tf.random.stateless_normal((n, n), seed=(0, 2), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    product = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y), tf.float32)))
    product(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        float(product(a, b))
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def bench_pipeline(args) -> dict:
    import bench_augment  # the 2021 augmentation, transcribed by the augmentation benchmark
    from bt_helpers import augment, config

    batch = args.batch
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(batch * (args.steps + 2), 32, 32, 3), dtype=np.uint8)
    fixed_a = tf.constant(rng.random((batch, 32, 32, 3), dtype=np.float32))
    fixed_b = tf.constant(rng.random((batch, 32, 32, 3), dtype=np.float32))
    results = {"command": "pipeline", "batch_size": batch, "timed_steps": args.steps,
               "machine": machine()}
    # The arithmetic of one image pair: two views, forward + backward (3x the forward) through
    # encoder and projector, and its share of the loss's D x D product c = z_a^T z_b / N
    # (D^2 multiply-adds forward, twice that backward).
    units = 5000
    forward = models.count_flops(resnet34_2021()) + models.count_flops(projector_2021(units=units))
    flops_per_pair = 2 * 3 * forward + 3 * 2 * units ** 2
    peaks = {"float32": matmul_peak_gflops(tf.float32),
             "bfloat16": matmul_peak_gflops(tf.bfloat16)}
    results.update(flops_per_pair=flops_per_pair,
                   matmul_peak_gflops={k: round(v, 1) for k, v in peaks.items()},
                   pairs_per_s_at_float32_matmul_peak=round(
                       peaks["float32"] * 1e9 / flops_per_pair, 1))

    # (1) the 2021 example
    keras.utils.set_random_seed(0)
    model = BarlowModel2021(keras.Sequential([resnet34_2021(), projector_2021()]),
                            BarlowLoss2021())
    model.compile(optimizer=keras.optimizers.Lamb())
    dataset = bench_augment.example_2021_dataset(images, batch, seed=0, float64=False)
    row = {"augment_ms": _augment_ms(dataset, args.steps)}
    forward = tf.function(model.forward)
    row["forward_ms"] = _median_ms(forward, (fixed_a, fixed_b), args.steps)
    model.optimizer.build(model.network.trainable_variables)
    step = tf.function(model.train_step)
    row["step_ms"] = _median_ms(step, ((fixed_a, fixed_b),), args.steps)
    row["backward_ms"] = row["step_ms"] - row["forward_ms"]
    row["pairs_per_s"], row["fit_step_seconds"] = _fit_pairs_per_s(model, dataset, args.steps,
                                                                  batch)
    results["example_2021"] = row

    # (2) the package on the same network
    preset = config.get_preset("teaching").replace(batch_size=batch, image_size=32,
                                                    recipe="original_2021", mixed_precision=True,
                                                    augment_on_device=False)
    variants = [("package", None)] + ([("package_float32", False)] if args.float32 else [])
    for name, precision in variants:
        mp, _ = train.use_gpu_features(preset, mixed_precision=precision)
        previous = keras.mixed_precision.global_policy()
        if mp:
            keras.mixed_precision.set_global_policy(f"mixed_{mp}")
        keras.utils.set_random_seed(0)
        encoder, head = resnet34_2021(), projector_2021()
        keras.mixed_precision.set_global_policy(previous)
        model = train.BarlowTwinsModel(encoder, head, lambda_offdiag=5e-3)
        model.compile(optimizer=keras.optimizers.Lamb())
        model.optimizer.build(model.trainable_variables)
        model.built = True
        dataset = train.make_dataset(images, preset, seed=0)
        row = {"precision": mp or "float32",
               "augment_ms": _augment_ms(dataset, args.steps)}
        forward = tf.function(lambda a, b: model.compute_terms(a, b).loss)
        row["forward_ms"] = _median_ms(forward, (fixed_a, fixed_b), args.steps)
        step = tf.function(model.train_step)
        row["step_ms"] = _median_ms(step, ((fixed_a, fixed_b),), args.steps)
        row["backward_ms"] = row["step_ms"] - row["forward_ms"]
        row["pairs_per_s"], row["fit_step_seconds"] = _fit_pairs_per_s(
            model, dataset, args.steps, batch)
        results[name] = row
    for name in ("package", "package_float32"):
        if name in results:
            results[f"speedup_{name}"] = results[name]["pairs_per_s"] / \
                results["example_2021"]["pairs_per_s"]
    for row in (results.get(k) for k in ("example_2021", "package", "package_float32")):
        if row:
            parts = {k: row[k] for k in ("augment_ms", "forward_ms", "backward_ms")}
            row["dominant"] = max(parts, key=parts.get).removesuffix("_ms")
            for k in ("augment_ms", "forward_ms", "backward_ms", "step_ms"):
                row[k] = round(row[k], 1)
            achieved = flops_per_pair * row["pairs_per_s"] / 1e9
            row["achieved_gflops"] = round(achieved, 1)
            row["fraction_of_matmul_peak"] = round(
                achieved / peaks[row.get("precision", "float32")], 2)
            row["pairs_per_s"] = round(row["pairs_per_s"], 2)
    results["machine_after"] = {"load_average": [round(v, 2) for v in os.getloadavg()]}
    return results


# ------------------------------------------------------------------------------------------------
# teaching: ten minutes on the CPU, then the linear probe
# ------------------------------------------------------------------------------------------------

def bench_teaching(args) -> dict:
    from bt_helpers import evaluate
    from bt_helpers.config import get_preset
    from bt_helpers.data import load_data

    preset = get_preset("teaching")
    overrides = json.loads(args.overrides) if args.overrides else {}
    if overrides:
        preset = preset.replace(**{k: tuple(v) if isinstance(v, list) else v
                                   for k, v in overrides.items()})
    images = load_data(source="folder" if args.data_dir else None, data_dir=args.data_dir,
                       preset=preset, seed=0)
    if images.source == "synthetic" and not args.allow_synthetic:
        raise SystemExit("CIFAR-10 not found: pass --data-dir (or BT_DATA_DIR), or "
                         "--allow-synthetic for a dry run.")
    results = {"command": "teaching", "preset": preset.describe(), "data": images.describe(),
               "budget_s": 60 * args.minutes, "machine": machine(), "overrides": overrides,
               "seed": args.seed}
    steps = train.steps_per_epoch(len(images.x_train), preset.batch_size)

    if args.epochs:  # fixed length; the hard stop still ends the run at the budget
        epochs = args.epochs
    else:  # throughput from a short warm-up run (not counted) sizes the schedule to the budget
        warm = train.train(preset.replace(epochs=1, warmup_epochs=0), images, None,
                           seed=args.seed, knn_every=0, verbose=False,
                           time_budget_s=args.warmup_s, export=False)
        pairs_per_s = warm.history[-1]["pairs_per_second"]  # steady state, tracing left out
        trace_s = warm.history[-1]["trace_seconds"] or 0.0
        # 10% margin: a long run's rate differs from the warm-up's by up to about 10% either
        # way (measured: 913 vs 808 and 775 vs 843 pairs/s), and the cosine schedule should
        # reach its end before the hard stop.
        epochs = max(1, int(0.9 * (60 * args.minutes - trace_s) * pairs_per_s /
                            (steps * preset.batch_size)))
        results.update(warmup_pairs_per_s=round(pairs_per_s, 1), trace_s=round(trace_s, 1))
    warmup_epochs = min(preset.warmup_epochs, epochs - 1) if epochs > 1 else 0
    run_preset = preset.replace(epochs=epochs, warmup_epochs=warmup_epochs)
    results.update(epochs=epochs, warmup_epochs=warmup_epochs)

    start = time.perf_counter()
    result = train.train(run_preset, images, args.out, seed=args.seed, knn_every=0,
                         verbose=args.verbose,
                         time_budget_s=60 * args.minutes, resume=False, export=False)
    wall = time.perf_counter() - start
    trained_steps = int(result.model.optimizer.iterations.numpy())
    results.update(train_wall_s=round(wall, 1),
                   train_steps_s=round(sum(r["seconds"] for r in result.history), 1),
                   steps=trained_steps, pairs=trained_steps * preset.batch_size,
                   pairs_per_s=round(trained_steps * preset.batch_size /
                                     max(sum(r["seconds"] for r in result.history), 1e-9), 1),
                   stopped_by_budget=bool(trained_steps < epochs * steps),
                   final_loss=result.history[-1]["loss"],
                   final_invariance=result.history[-1]["invariance"],
                   final_redundancy=result.history[-1]["redundancy"])

    def probe(encoder, size=None):
        """Linear probe + kNN of frozen features of the stored images (resized to ``size``)."""
        if size is None:
            enc = train.encoder_for_images(encoder, preset.image_size)
        else:
            def enc(x, training=False):
                return encoder(train.resize_images(tf.cast(x, tf.float32), size),
                               training=training)
        f_train = evaluate.extract_features(enc, images.x_train, verbose=False)
        f_val = evaluate.extract_features(enc, images.x_val, verbose=False)
        linear = evaluate.linear_probe(f_train, images.y_train, f_val, images.y_val, seed=0)
        knn = evaluate.knn_accuracy(f_train, images.y_train, f_val, images.y_val)
        return {"linear_probe": round(linear.accuracy, 4), "knn": round(knn, 4),
                "probe_l2": linear.l2, "probe_epochs": linear.epochs,
                "feature_dim": int(f_train.shape[1])}

    # Both encoders are evaluated in float32, as bt_helpers.evaluate does with a run folder,
    # whatever precision the training used.
    trained = train.build_model(run_preset, seed=args.seed)
    trained.encoder.set_weights(result.model.encoder.get_weights())
    results["trained"] = probe(trained.encoder)
    random_model = train.build_model(run_preset, seed=args.seed)  # the run's initial weights
    results["random_init"] = probe(random_model.encoder)
    if preset.image_size != images.x_train.shape[1]:  # the same, fed views-sized images
        results["trained_at_view_size"] = probe(trained.encoder, preset.image_size)
        results["random_init_at_view_size"] = probe(random_model.encoder, preset.image_size)
    results["gain_points"] = round(100 * (results["trained"]["linear_probe"]
                                          - results["random_init"]["linear_probe"]), 2)
    results["targets_met"] = bool(results["trained"]["linear_probe"] >= 0.55
                                  and results["gain_points"] >= 10)
    results["machine_after"] = {"load_average": [round(v, 2) for v in os.getloadavg()]}
    return results


# ------------------------------------------------------------------------------------------------
# gpu: the full preset's epoch
# ------------------------------------------------------------------------------------------------

#: Dense bfloat16 peak, TFLOP/s, by a substring of the device name (vendor data sheets).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0,
                    "T4": 65.0, "V100": 125.0}


def bench_gpu(args) -> dict:
    from bt_helpers.config import get_preset
    from bt_helpers.data import load_data

    if not tf.config.list_physical_devices("GPU"):
        return {"command": "gpu", "skipped": "no GPU visible to TensorFlow",
                "machine": machine()}
    preset = get_preset("full").replace(epochs=args.epochs, warmup_epochs=1, knn_every=0)
    images = load_data(source="folder" if args.data_dir else None, data_dir=args.data_dir,
                       preset=preset, seed=0)
    result = train.train(preset, images, None, verbose=args.verbose, export=False)
    net = models.build_from_preset(preset)
    flops_per_pair = 2 * 3 * models.count_flops(net.model)
    epoch_s = statistics.median(r["seconds"] for r in result.history[1:]) \
        if len(result.history) > 1 else result.history[-1]["seconds"]
    steps = train.steps_per_epoch(len(images.x_train), preset.batch_size)
    pairs_per_s = steps * preset.batch_size / epoch_s
    name = machine().get("gpu") or ""
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    achieved = flops_per_pair * pairs_per_s / 1e12
    return {"command": "gpu", "preset": preset.describe(), "data": images.describe(),
            "machine": machine(), "epoch_seconds": [round(r["seconds"], 2)
                                                    for r in result.history],
            "epoch_s_median_after_first": round(epoch_s, 2),
            "pairs_per_s": round(pairs_per_s, 1),
            "seconds_per_50k_pairs": round(50_000 / pairs_per_s, 2),
            "flops_per_pair": flops_per_pair, "achieved_tflops": round(achieved, 1),
            "peak_bf16_tflops": peak, "mfu": round(achieved / peak, 3) if peak else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pipeline", help="2021 port against the package, same network")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    p.add_argument("--float32", action="store_true", help="also time the package in float32")
    t = sub.add_parser("teaching", help="ten minutes of pretraining, then the linear probe")
    t.add_argument("--data-dir", default=None)
    t.add_argument("--minutes", type=float, default=10.0)
    t.add_argument("--epochs", type=int, default=None,
                   help="pretrain this many epochs (default: as many as the budget allows, "
                        "from a timed warm-up); the budget still stops the run")
    t.add_argument("--warmup-s", type=float, default=45.0,
                   help="seconds of the (uncounted) throughput warm-up")
    t.add_argument("--seed", type=int, default=0,
                   help="seed of the weights, views and batch order (the held-out split is "
                        "fixed); several seeds measure the run-to-run spread")
    t.add_argument("--out", default=None, help="run folder (default: in memory)")
    t.add_argument("--overrides", default=None,
                   help='JSON preset overrides, e.g. \'{"width": 32}\' (what was tried)')
    t.add_argument("--allow-synthetic", action="store_true")
    t.add_argument("--verbose", action="store_true")
    g = sub.add_parser("gpu", help="the full preset's epoch time on a GPU")
    g.add_argument("--data-dir", default=None)
    g.add_argument("--epochs", type=int, default=3)
    g.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    run = {"pipeline": bench_pipeline, "teaching": bench_teaching, "gpu": bench_gpu}
    print(json.dumps(run[args.command](args), indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
