"""bt_helpers.optim: LARS against a NumPy reference of the official update, the schedule."""

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from bt_helpers import optim
from bt_helpers.config import get_preset


# --- a NumPy reference, written from facebookresearch/barlowtwins main.py -----------------------

def lars_reference(weights, grads_per_step, lrs, wd=1e-6, momentum=0.9, eta=0.001,
                   exclude_1d=True, lr_1d_multiplier=1.0, clip=False):
    """Apply len(lrs) LARS steps to copies of `weights` (a list of arrays) in float64."""
    w = [np.array(x, np.float64) for x in weights]
    mu = [np.zeros_like(x) for x in w]
    for grads, lr in zip(grads_per_step, lrs):
        for i, g in enumerate(grads):
            g = np.array(g, np.float64)
            step_lr = lr
            if exclude_1d and w[i].ndim <= 1:
                step_lr = lr * lr_1d_multiplier
            else:
                g = g + wd * w[i]
                wn, gn = np.linalg.norm(w[i]), np.linalg.norm(g)
                q = eta * wn / gn if (wn > 0 and gn > 0) else 1.0
                if clip and wn > 0 and gn > 0:
                    q = min(q / lr, 1.0)
                g = q * g
            mu[i] = momentum * mu[i] + g
            w[i] = w[i] - step_lr * mu[i]
    return w


def _variables(seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"kernel": (5, 3, 3, 4), "dense": (8, 6), "bias": (6,), "gamma": (4,),
              "zero": (3, 2)}
    values = {k: rng.normal(size=s).astype("float32") for k, s in shapes.items()}
    values["zero"][:] = 0.0  # ||w|| = 0: trust ratio falls back to 1
    variables = [keras.Variable(v, name=k) for k, v in values.items()]
    return variables, [values[k] for k in shapes]


def _grads(variables, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.normal(scale=0.1, size=v.shape).astype("float32") for v in variables]
            for _ in range(steps)]


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(weight_decay=1e-2, eta=0.02),
    dict(exclude_1d=False, weight_decay=1e-3),
    dict(lr_1d_multiplier=0.024),
    dict(clip_trust_ratio=True, eta=0.02),
])
def test_lars_matches_numpy_reference(steps, kwargs):
    variables, initial = _variables()
    grads = _grads(variables, steps)
    lr = 0.5
    opt = optim.LARS(learning_rate=lr, **kwargs)
    for g in grads:
        opt.apply([tf.constant(x) for x in g], variables)
    ref_kwargs = dict(wd=kwargs.get("weight_decay", 1e-6), eta=kwargs.get("eta", 0.001),
                      exclude_1d=kwargs.get("exclude_1d", True),
                      lr_1d_multiplier=kwargs.get("lr_1d_multiplier", 1.0),
                      clip=kwargs.get("clip_trust_ratio", False))
    expected = lars_reference(initial, grads, [lr] * steps, **ref_kwargs)
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(v.numpy(), e, rtol=2e-5, atol=1e-6, err_msg=v.name)
    assert int(opt.iterations.numpy()) == steps


def test_lars_excludes_1d_variables_from_decay_and_trust_ratio():
    # With a zero gradient, only weight decay can move a variable: 1-D ones must stay put.
    w2 = keras.Variable(np.ones((3, 3), "float32"))
    b = keras.Variable(np.ones((3,), "float32"))
    opt = optim.LARS(learning_rate=1.0, weight_decay=0.1, eta=1.0)
    opt.apply([tf.zeros((3, 3)), tf.zeros((3,))], [w2, b])
    np.testing.assert_array_equal(b.numpy(), np.ones(3))
    # g = wd * w, q = eta * ||w|| / ||wd w|| = 1/wd, so the step is lr * w: w becomes 0.
    np.testing.assert_allclose(w2.numpy(), np.zeros((3, 3)), atol=1e-6)
    # A 1-D variable takes the plain momentum-SGD step lr * g (no trust ratio).
    opt.apply([tf.zeros((3, 3)), tf.fill((3,), 0.5)], [w2, b])
    np.testing.assert_allclose(b.numpy(), np.full(3, 0.5), rtol=1e-6)


def test_lars_honours_exclude_from_weight_decay():
    w = keras.Variable(np.ones((2, 2), "float32"), name="skip_me")
    opt = optim.LARS(learning_rate=1.0, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["skip_me"])
    opt.apply([tf.zeros((2, 2))], [w])  # no decay and a zero gradient: nothing moves
    np.testing.assert_array_equal(w.numpy(), np.ones((2, 2)))


def test_lars_with_schedule_follows_reference_learning_rates():
    variables, initial = _variables(3)
    grads = _grads(variables, 5, seed=4)
    sched = optim.WarmupCosine(0.4, warmup_steps=2, total_steps=5)
    opt = optim.LARS(learning_rate=sched, weight_decay=1e-4)
    for g in grads:
        opt.apply([tf.constant(x) for x in g], variables)
    lrs = [float(sched(s)) for s in range(5)]
    expected = lars_reference(initial, grads, lrs, wd=1e-4)
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(v.numpy(), e, rtol=2e-5, atol=1e-6)


def test_lars_config_round_trip():
    sched = optim.WarmupCosine(0.3, 10, 100, end_lr_ratio=0.01)
    opt = optim.LARS(learning_rate=sched, momentum=0.8, eta=0.02, weight_decay=1e-4,
                     exclude_1d=False, lr_1d_multiplier=0.5, clip_trust_ratio=True)
    config = keras.optimizers.serialize(opt)
    clone = keras.optimizers.deserialize(config)
    assert isinstance(clone, optim.LARS)
    for key in ("momentum", "eta", "weight_decay", "exclude_1d", "lr_1d_multiplier",
                "clip_trust_ratio"):
        assert getattr(clone, key) == getattr(opt, key), key
    assert isinstance(clone._learning_rate, optim.WarmupCosine)
    assert clone._learning_rate.get_config() == sched.get_config()


def test_lars_rejects_bad_arguments():
    with pytest.raises(ValueError, match="momentum=1.5"):
        optim.LARS(momentum=1.5)
    with pytest.raises(ValueError, match="eta=0"):
        optim.LARS(eta=0)
    with pytest.raises(ValueError, match="weight_decay=-1"):
        optim.LARS(weight_decay=-1)


def _tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(16),
                             keras.layers.BatchNormalization(), keras.layers.ReLU(),
                             keras.layers.Dense(1)])


def test_lars_trains_a_model_with_fit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6)).astype("float32")
    y = (x @ rng.normal(size=(6, 1))).astype("float32")
    model = _tiny_model()
    model.compile(optimizer=optim.LARS(learning_rate=0.1, eta=0.2), loss="mse")
    history = model.fit(x, y, batch_size=32, epochs=8, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses


def test_lars_inside_tf_function_equals_eager():
    variables_a, _ = _variables(5)
    variables_b, _ = _variables(5)
    grads = _grads(variables_a, 3, seed=6)
    opt_a, opt_b = optim.LARS(learning_rate=0.3), optim.LARS(learning_rate=0.3)
    opt_b.build(variables_b)

    @tf.function
    def step(g):
        opt_b.apply(g, variables_b)

    for g in grads:
        opt_a.apply([tf.constant(x) for x in g], variables_a)
        step([tf.constant(x) for x in g])
    for a, b in zip(variables_a, variables_b):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_lars_under_loss_scale_optimizer_unscales_gradients():
    variables_a, _ = _variables(7)
    variables_b, _ = _variables(7)
    grads = _grads(variables_a, 2, seed=8)
    plain = optim.LARS(learning_rate=0.3)
    scaled = keras.optimizers.LossScaleOptimizer(optim.LARS(learning_rate=0.3),
                                                 initial_scale=1024.0)
    for g in grads:
        plain.apply([tf.constant(x) for x in g], variables_a)
        scaled.apply([tf.constant(x * 1024.0) for x in g], variables_b)
    for a, b in zip(variables_a, variables_b):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


# --- schedule ----------------------------------------------------------------------------------

def test_warmup_cosine_key_values():
    s = optim.WarmupCosine(1.2, warmup_steps=10, total_steps=110, end_lr_ratio=0.001)
    lr = lambda step: float(s(step))  # noqa: E731
    assert lr(0) == 0.0
    assert lr(5) == pytest.approx(0.6)
    assert lr(10) == pytest.approx(1.2)
    assert lr(60) == pytest.approx(0.5 * 1.2 + 0.5 * 0.0012)  # half-way through the cosine
    assert lr(110) == pytest.approx(0.0012)
    assert lr(1000) == pytest.approx(0.0012)  # stays at the floor after the end
    # Equal to the official formula at every step.
    for step in range(0, 111, 7):
        if step < 10:
            ref = 1.2 * step / 10
        else:
            q = 0.5 * (1 + math.cos(math.pi * (step - 10) / 100))
            ref = 1.2 * q + 0.0012 * (1 - q)
        assert lr(step) == pytest.approx(ref, rel=1e-5, abs=1e-7), step


def test_warmup_cosine_without_warmup_starts_at_peak():
    s = optim.WarmupCosine(0.5, warmup_steps=0, total_steps=4)
    assert float(s(0)) == pytest.approx(0.5)
    assert float(s(4)) == pytest.approx(0.0005)


def test_warmup_cosine_serialises_and_validates():
    s = optim.WarmupCosine(0.3, 5, 50, end_lr_ratio=0.01)
    clone = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(s))
    assert isinstance(clone, optim.WarmupCosine)
    assert [float(clone(i)) for i in (0, 3, 5, 30, 50)] == \
        [float(s(i)) for i in (0, 3, 5, 30, 50)]
    with pytest.raises(ValueError, match="warmup_steps=20, total_steps=10"):
        optim.WarmupCosine(0.3, 20, 10)
    with pytest.raises(ValueError, match="peak_lr=0"):
        optim.WarmupCosine(0, 1, 10)


def test_make_optimizer_from_presets():
    preset = get_preset("teaching")
    opt = optim.make_optimizer(preset, steps_per_epoch=175)
    assert isinstance(opt, optim.LARS)
    assert opt.weight_decay == preset.weight_decay and opt.eta == 0.001
    sched = opt._learning_rate
    assert sched.peak_lr == pytest.approx(preset.base_lr * preset.batch_size / 256)
    assert sched.warmup_steps == preset.warmup_epochs * 175
    assert sched.total_steps == preset.epochs * 175
    assert optim.make_optimizer(preset, 175, eta=0.02).eta == 0.02

    lamb = optim.make_optimizer(preset.replace(optimizer="lamb"), steps_per_epoch=10)
    assert isinstance(lamb, keras.optimizers.Lamb)
    # Lamb's decoupled decay skips biases and BatchNorm parameters.
    model = _tiny_model()
    names = {v.path: lamb._use_weight_decay(v) for v in model.trainable_variables}
    assert all(not use for path, use in names.items() if path.endswith(("bias", "gamma", "beta")))
    assert any(use for path, use in names.items() if path.endswith("kernel"))

    with pytest.raises(ValueError, match="steps_per_epoch"):
        optim.make_optimizer(preset, steps_per_epoch=0)
