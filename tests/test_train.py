"""bt_helpers.train: the training step, the data order, checkpoints, resuming, tf.distribute."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from bt_helpers import loss as loss_lib
from bt_helpers import models, optim, train
from bt_helpers.config import get_preset

ROOT = Path(__file__).resolve().parents[1]

# A tiny configuration: 64 images of 16x16, batch 16 -> 4 steps per epoch; a learning rate low
# enough that training is smooth (a loss spike would amplify float rounding differences).
TINY = get_preset("ci").replace(n_train=64, n_val=32, image_size=16, width=4, proj_dims=(32, 32),
                                batch_size=16, epochs=2, knn_every=1, base_lr=0.05)


class _Images:
    """The fields of bt_helpers.data.ImageData that train() reads."""

    def __init__(self, n_train=64, n_val=32, size=16, seed=0):
        rng = np.random.default_rng(seed)
        # Smooth random images (a low-resolution pattern upsampled), so augmentations matter.
        low = rng.integers(0, 256, size=(n_train + n_val, 4, 4, 3)).astype(np.float32)
        x = tf.image.resize(low, (size, size), method="bilinear").numpy().round()
        x = x.clip(0, 255).astype(np.uint8)
        y = rng.integers(0, 4, size=n_train + n_val)
        self.x_train, self.y_train = x[:n_train], y[:n_train]
        self.x_val, self.y_val = x[n_train:], y[n_train:]
        self.origin = "test images"


def _tiny_model(preset=TINY, seed=0, augment=False):
    model = train.build_model(preset.replace(augment_on_device=augment), seed=seed)
    model.compile(optimizer=optim.make_optimizer(preset, steps_per_epoch=4))
    model.optimizer.build(model.trainable_variables)
    return model


def _views(seed=0, n=16, size=16):
    rng = np.random.default_rng(seed)
    return (rng.random((n, size, size, 3)).astype(np.float32),
            rng.random((n, size, size, 3)).astype(np.float32))


# --- the training step -------------------------------------------------------------------------

def test_train_step_equals_a_step_by_hand():
    model = _tiny_model()
    reference = _tiny_model()  # same seed: same initial weights
    for a, b in zip(model.weights, reference.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x_a, x_b = _views()

    logs = model.train_step((tf.constant(x_a), tf.constant(x_b)))

    with tf.GradientTape() as tape:
        z_a = reference.projector(reference.encoder(x_a, training=True), training=True)
        z_b = reference.projector(reference.encoder(x_b, training=True), training=True)
        inv, red, _ = loss_lib.barlow_twins_terms(z_a, z_b, TINY.lambda_offdiag)
        total = inv + red
    variables = reference.trainable_variables
    reference.optimizer.apply(tape.gradient(total, variables), variables)

    assert float(logs["step_loss"]) == pytest.approx(float(total), rel=1e-5)
    assert float(logs["step_invariance"]) == pytest.approx(float(inv), rel=1e-5)
    assert float(logs["step_redundancy"]) == pytest.approx(float(red), rel=1e-5)
    assert float(logs["loss"]) == pytest.approx(float(logs["invariance"] + logs["redundancy"]),
                                                rel=1e-5)
    for a, b in zip(model.weights, reference.weights):  # BatchNorm statistics included
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
    assert int(model.optimizer.iterations.numpy()) == 1


def test_views_on_the_device_are_seeded_by_the_step():
    model = _tiny_model(augment=True)
    images = _Images().x_train[:16]
    a0, b0 = model.make_views(images, step=3)
    a1, b1 = model.make_views(images, step=3)
    a2, _ = model.make_views(images, step=4)
    np.testing.assert_array_equal(a0.numpy(), a1.numpy())
    np.testing.assert_array_equal(b0.numpy(), b1.numpy())
    assert not np.allclose(a0.numpy(), b0.numpy())  # two different views
    assert not np.allclose(a0.numpy(), a2.numpy())  # another step, other views
    assert a0.shape == (16, TINY.image_size, TINY.image_size, 3)
    logs = model.train_step(tf.constant(images))  # uint8 images in, views made inside
    assert np.isfinite(float(logs["loss"]))


def test_model_without_augmenter_asks_for_pairs():
    model = _tiny_model()
    with pytest.raises(ValueError, match="no augmenter"):
        model.make_views(np.zeros((4, 16, 16, 3), np.uint8))


# --- data order -------------------------------------------------------------------------------

def _batches(ds, count):
    return [tuple(t.numpy() for t in (b if isinstance(b, tuple) else (b,)))
            for b in ds.take(count)]


def test_dataset_is_a_pure_function_of_seed_epoch_and_step():
    images = _Images().x_train
    preset = TINY.replace(epochs=3)
    full = _batches(train.make_dataset(images, preset, seed=5, augment_on_device=True), 12)
    resumed = _batches(train.make_dataset(images, preset, seed=5, initial_epoch=2,
                                          augment_on_device=True), 4)
    for a, b in zip(full[8:], resumed):  # epoch 3 of a fresh run == epoch 3 of a resumed run
        np.testing.assert_array_equal(a[0], b[0])
    # Each epoch visits 4 full batches of distinct images, in a new order.
    epoch0 = np.concatenate([b[0] for b in full[:4]])
    flat = epoch0.reshape(len(epoch0), -1)
    assert len(np.unique(flat, axis=0)) == 64
    assert not np.array_equal(full[0][0], full[4][0])
    other = _batches(train.make_dataset(images, preset, seed=6, augment_on_device=True), 1)
    assert not np.array_equal(full[0][0], other[0][0])
    # With views made in tf.data: float pairs at the preset's size, also reproducible.
    pairs = _batches(train.make_dataset(images, preset, seed=5, augment_on_device=False), 2)
    again = _batches(train.make_dataset(images, preset, seed=5, augment_on_device=False), 2)
    assert pairs[0][0].shape == (16, 16, 16, 3) and pairs[0][0].dtype == np.float32
    np.testing.assert_array_equal(pairs[1][1], again[1][1])
    with pytest.raises(ValueError, match="larger than the 64 training images"):
        train.make_dataset(images, preset.replace(batch_size=128))


# --- checkpoints -------------------------------------------------------------------------------

def test_checkpoint_round_trip_and_atomic_write(tmp_path, monkeypatch):
    model = _tiny_model(seed=1)
    model.train_step(tuple(tf.constant(v) for v in _views(2)))
    path = tmp_path / "checkpoint.npz"
    train.save_checkpoint(path, model, model.optimizer, {"epoch": 1})
    clone = _tiny_model(seed=2)
    meta = train.load_checkpoint(path, clone, clone.optimizer)
    assert meta["epoch"] == 1
    for a, b in zip(model.weights + model.optimizer.variables,
                    clone.weights + clone.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(clone.optimizer.iterations.numpy()) == 1

    # A writer that dies before the rename leaves the old checkpoint whole and no temp file.
    before = path.read_bytes()

    def crash(src, dst):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(train.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        train.save_checkpoint(path, clone, clone.optimizer, {"epoch": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]

    other = train.build_model(TINY.replace(width=8), seed=0)
    with pytest.raises(ValueError, match="another preset"):
        train.load_checkpoint(path, other)


def test_train_resumes_and_load_encoder(tmp_path):
    images = _Images()
    run = tmp_path / "run"
    first = train.train(TINY, images, run, epochs=1, verbose=False)
    assert [r["epoch"] for r in first.history] == [1]
    assert first.history[0]["knn_accuracy"] is not None
    second = train.train(TINY, images, run, epochs=2, verbose=False)
    assert second.initial_epoch == 1
    assert [r["epoch"] for r in second.history] == [1, 2]
    assert [s["step"] for s in second.steps] == list(range(1, 9))
    assert int(second.model.optimizer.iterations.numpy()) == 8
    # CSV logs mirror the checkpoint; the encoder is exported.
    assert (run / train.HISTORY_CSV).read_text().count("\n") == 3
    assert (run / train.ENCODER_NAME).exists()
    encoder, preset, meta = train.load_encoder(run)
    assert meta["epoch"] == 2 and preset == TINY.replace(epochs=2, warmup_epochs=0)
    x = images.x_val[:8].astype(np.float32) / 255
    np.testing.assert_allclose(encoder(x).numpy(), second.encoder(x).numpy(), rtol=1e-5,
                               atol=1e-6)
    # A finished run has nothing left to do; another configuration is refused.
    third = train.train(TINY, images, run, epochs=2, verbose=False)
    assert third.initial_epoch == 2 and len(third.history) == 2
    with pytest.raises(ValueError, match="width: saved 4, now 8"):
        train.train(TINY.replace(width=8), images, run, verbose=False)


def test_pretraining_on_small_views_evaluates_the_stored_images_at_their_size(tmp_path):
    """image_size=16 on 32x32 images: views are resized to 16, the encoder takes any size."""
    images = _Images(size=32)
    net = models.build_from_preset(TINY, seed=0)
    model = train.build_model(TINY, seed=0)
    for built, flexible in zip(net.encoder.get_weights(), model.encoder.get_weights()):
        np.testing.assert_array_equal(built, flexible)  # same initial weights
    pair = next(iter(train.make_dataset(images.x_train, TINY, seed=0)))
    assert pair[0].shape == (TINY.batch_size, 16, 16, 3)
    result = train.train(TINY, images, tmp_path / "run", epochs=1, verbose=False)
    row = result.history[0]
    assert row["trace_seconds"] > 0 and row["pairs_per_second"] > 0
    encoder, _, _ = train.load_encoder(tmp_path / "run")
    assert train.encoder_for_images(encoder, TINY.image_size) is encoder
    for side in (16, 32):
        x = images.x_val[:4, :side, :side].astype(np.float32) / 255
        assert encoder(x, training=False).shape == (4, 8 * TINY.width)


def test_nan_loss_stops_with_the_step_and_last_good_checkpoint(tmp_path):
    class Poison(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:  # break the weights at the start of the second epoch
                kernel = self.model.encoder.get_layer("stem_conv").kernel
                kernel.assign(np.full(kernel.shape, np.nan, np.float32))

    run = tmp_path / "run"
    with pytest.raises(train.TrainingDivergedError) as err:
        train.train(TINY, _Images(), run, knn_every=0, callbacks=[Poison()], verbose=False)
    message = str(err.value)
    assert "step 5 (epoch 2)" in message
    assert str(run / train.CHECKPOINT_NAME) in message and "(epoch 1)" in message
    assert train.read_checkpoint_meta(run / train.CHECKPOINT_NAME)["epoch"] == 1


# --- the command line, killed and resumed -------------------------------------------------------

def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT), BT_PRESET="")
    env.pop("TF_CONFIG", None)
    return env


@pytest.mark.slow
def test_cli_survives_sigkill_and_resumes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "bt_helpers", "train", "--preset", "ci", "--epochs", "2",
           "--out", str(out)]
    ckpt = out / train.CHECKPOINT_NAME
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    seen = set()
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if ckpt.exists():  # every checkpoint ever visible must be complete and readable
                seen.add(train.read_checkpoint_meta(ckpt)["epoch"])
                if seen:
                    break
            time.sleep(0.05)
        time.sleep(0.5)  # well inside epoch 2
        proc.send_signal(signal.SIGKILL)
        first_output = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, first_output
    assert seen and max(seen) < 2, (seen, first_output)
    done = train.read_checkpoint_meta(ckpt)["epoch"]

    rerun = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"Resuming from {ckpt}: epoch {done} of 2 done" in rerun.stdout
    assert "checkpoint" in rerun.stdout and str(out) in rerun.stdout
    meta = train.read_checkpoint_meta(ckpt)
    assert [r["epoch"] for r in meta["history"]] == [1, 2]  # each epoch counted once
    steps = [s["step"] for s in meta["steps"]]
    assert steps == list(range(1, 2 * meta["steps_per_epoch"] + 1))  # iterations continued
    assert meta["step"] == 2 * meta["steps_per_epoch"]
    with np.load(ckpt) as data:
        assert all(np.isfinite(data[k]).all() for k in data.files if k != "meta.json")
    assert not list(out.glob(".*tmp*")), list(out.iterdir())
    history = (out / train.HISTORY_CSV).read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2"]


# --- tf.distribute -------------------------------------------------------------------------------

_WORKER = textwrap.dedent('''
    import json, os, sys
    mode, out = sys.argv[1], sys.argv[2]
    import tensorflow as tf
    if mode == "mirrored":  # two replicas on two logical CPU devices of one process
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:  # one replica per process, the cluster in TF_CONFIG
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import numpy as np
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from test_train import DIST_PRESET, _Images
    from bt_helpers import train
    result = train.train(DIST_PRESET, _Images(), None, knn_every=0, strategy=strategy,
                         verbose=False)
    weights = {w.path: w.numpy() for w in result.model.encoder.weights + result.model.projector.weights}
    info = {"replicas": strategy.num_replicas_in_sync, "loss": result.history[-1]["loss"],
            "synced_bn": sum(bool(getattr(l, "synchronized", False))
                             for l in result.model.encoder.layers)}
    if mode != "worker" or json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 0:
        np.savez(out, **weights)
        open(out + ".json", "w").write(json.dumps(info))
''')
# One epoch of 4 steps, views made in tf.data: every run sees the same global batches.
DIST_PRESET = TINY.replace(epochs=1, augment_on_device=False)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_distributed_runs_equal_a_single_process_run(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    (tmp_path / "test_train.py").write_text(Path(__file__).read_text())
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    runs = [("mirrored", "mirrored", {})] + [
        (f"worker{i}", "worker", {"TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": i}})}) for i in range(2)]
    procs = {name: subprocess.Popen([sys.executable, str(script), mode,
                                     str(tmp_path / f"{name}.npz")], cwd=tmp_path,
                                    env={**_env(), **extra}, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
             for name, mode, extra in runs}
    # Meanwhile, the reference: one process, one replica, the same global batches.
    single = train.train(DIST_PRESET, _Images(), None, knn_every=0, verbose=False)
    reference = {w.path: w.numpy()
                 for w in single.model.encoder.weights + single.model.projector.weights}
    outputs = {name: p.communicate(timeout=400)[0].decode() for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, f"{name}:\n{outputs[name][-3000:]}"

    for name in ("mirrored", "worker0"):
        info = json.loads((tmp_path / f"{name}.npz.json").read_text())
        assert info["replicas"] == 2 and info["synced_bn"] > 0, info
        assert info["loss"] == pytest.approx(single.history[-1]["loss"], rel=1e-4)
        other = np.load(tmp_path / f"{name}.npz")
        assert sorted(other.files) == sorted(reference)
        for key, value in reference.items():  # BatchNorm statistics included
            np.testing.assert_allclose(other[key], value, rtol=1e-4, atol=1e-5,
                                       err_msg=f"{name}: {key}")


# --- figures of notebook 05 ----------------------------------------------------------------------

def test_training_figures():
    import matplotlib

    matplotlib.use("Agg")
    from bt_helpers import plots

    steps = [dict(step=s, epoch=1 + (s - 1) // 4, loss=30.0 / s + 1, invariance=28.0 / s + 0.5,
                  redundancy=0.5 + 0.01 * s, lr=0.1 * (1 - s / 12)) for s in range(1, 13)]
    fig = plots.plot_training_curves(steps, smooth=3, epoch_steps=4)
    loss_ax, lr_ax = fig.axes
    assert loss_ax.get_yscale() == "log" and lr_ax.get_xlabel() == "optimizer step"
    assert len(loss_ax.lines) >= 6  # three raw + three smoothed curves (+ epoch marks)
    history = [dict(epoch=1, knn_accuracy=None), dict(epoch=2, knn_accuracy=0.31),
               dict(epoch=3, knn_accuracy=0.35)]
    fig = plots.plot_knn_accuracy(history, baseline=0.25, chance=0.1)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [31.0, 35.0])
    with pytest.raises(ValueError, match="no kNN accuracy"):
        plots.plot_knn_accuracy([dict(epoch=1, knn_accuracy=None)])
    with pytest.raises(ValueError, match="non-empty step log"):
        plots.plot_training_curves([])
    fig = plots.plot_lr_schedule(optim.WarmupCosine(0.5, 2, 10), 10, steps_per_epoch=2)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata().max(), 0.5)


@pytest.mark.parametrize("native, expected", [(True, "bfloat16"), (False, None)])
def test_precision_on_a_cpu_follows_native_bfloat16(monkeypatch, native, expected):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    monkeypatch.setattr(train, "cpu_has_native_bfloat16", lambda: native)
    # The teaching preset asks for mixed precision: bfloat16 only where the CPU computes it.
    assert train.use_gpu_features(get_preset("teaching")) == (expected, False)
    # XLA is for GPUs; explicit arguments win; the ci preset stays in float32.
    assert train.use_gpu_features(get_preset("full")) == (expected, False)
    assert train.use_gpu_features(get_preset("ci")) == (None, False)
    assert train.use_gpu_features(get_preset("teaching"), mixed_precision=False) == (None, False)
    assert train.use_gpu_features(get_preset("ci"), mixed_precision=True,
                                  jit_compile=True) == ("bfloat16", True)
    with pytest.raises(ValueError, match="mixed_precision=.fp8."):
        train.use_gpu_features(get_preset("ci"), mixed_precision="fp8")
