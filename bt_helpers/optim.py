"""Optimisers for Barlow Twins: LARS, the warm-up + cosine schedule, and a factory (notebook 05).

Keras 3 ships SGD, Adam and Lamb but no LARS, the optimiser of the Barlow Twins paper. This module
holds:

* :class:`LARS` -- SGD with momentum whose step for each weight matrix is rescaled by a per-layer
  *trust ratio* ``eta * ||w|| / ||g||``, with the official repository's semantics (below);
* :class:`WarmupCosine` -- a linear warm-up to the peak learning rate, then a cosine decay to a
  floor of ``end_lr_ratio`` (0.001) times the peak, as in the official ``adjust_learning_rate``;
* :func:`make_optimizer` -- LARS or Keras' own ``Lamb`` with that schedule, built from a preset.

The LARS update (facebookresearch/barlowtwins ``main.py``, checked against its source), for every
trainable variable ``w`` with gradient ``g``, learning rate ``lr``, weight decay ``wd``, momentum
``m`` (0.9) and trust coefficient ``eta`` (0.001)::

    if w is not 1-D:                     # biases and BatchNorm gamma/beta are 1-D: skipped
        g = g + wd * w                   # coupled (L2) weight decay, *before* the trust ratio
        q = eta * ||w|| / ||g||  if ||w|| > 0 and ||g|| > 0  else 1
        g = q * g                        # layer-wise adaptation
    mu = m * mu + g                      # momentum buffer, starts at 0
    w = w - lr * mu

Differences from the official code, on purpose: the official repository gives the 1-D
parameters their own, 0.024x smaller learning rate (``--learning-rate-biases 0.0048`` against
``--learning-rate-weights 0.2``); :class:`LARS` exposes that as ``lr_1d_multiplier`` (default 1,
solo-learn's CIFAR recipe, which this course's presets follow). ``clip_trust_ratio=True`` gives
solo-learn's variant ``q = min(eta * ||w|| / (||g|| lr), 1)``, which never lets the adapted
step exceed the plain SGD one.
"""

from __future__ import annotations

import math

import keras
from keras import ops

_SERIAL_PACKAGE = "bt_helpers"


@keras.saving.register_keras_serializable(package=_SERIAL_PACKAGE)
class LARS(keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al., 2017), as used by Barlow Twins.

    SGD with momentum where every weight matrix / convolution kernel takes a step whose size is
    proportional to its own norm: the gradient (with coupled weight decay) is rescaled by the
    trust ratio ``eta * ||w|| / ||g||``. One-dimensional variables (biases, BatchNorm ``gamma``
    and ``beta``) get neither weight decay nor the trust ratio when ``exclude_1d=True``, as in
    the official Barlow Twins code. The exact update rule is in this module's docstring.

    Weight decay here is the L2 penalty added to the gradient (the official semantics), not
    Keras' decoupled ``w -= lr * wd * w``; ``exclude_from_weight_decay()`` is honoured too.

    Args:
        learning_rate: a float or a ``keras.optimizers.schedules.LearningRateSchedule`` such as
            :class:`WarmupCosine`. Defaults to ``0.2`` (the official base rate for weights).
        momentum: momentum factor in [0, 1). Defaults to ``0.9``.
        eta: trust coefficient, > 0. Defaults to ``0.001`` (the official value).
        weight_decay: L2 penalty ``wd`` added to the gradient of non-excluded variables, >= 0.
            Defaults to ``1e-6``.
        exclude_1d: skip weight decay and the trust ratio for 1-D variables. Defaults to
            ``True``.
        lr_1d_multiplier: multiplies the learning rate of 1-D variables (official code: 0.024).
            Defaults to ``1.0``.
        clip_trust_ratio: use solo-learn's clipped ratio ``min(q / lr, 1)``. Defaults to
            ``False``.
        name: optimizer name. Defaults to ``"lars"``.
        **kwargs: the base optimizer's keyword arguments (``clipnorm``, ``use_ema``,
            ``loss_scale_factor``, ``gradient_accumulation_steps``...).

    Example:

    >>> opt = LARS(learning_rate=WarmupCosine(0.3, warmup_steps=100, total_steps=1000))
    >>> model.compile(optimizer=opt)  # doctest: +SKIP
    """

    def __init__(self, learning_rate=0.2, momentum=0.9, eta=0.001, weight_decay=1e-6,
                 exclude_1d=True, lr_1d_multiplier=1.0, clip_trust_ratio=False, name="lars",
                 **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, name=name,
                         **kwargs)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={momentum}")
        if not float(eta) > 0.0:
            raise ValueError(f"`eta` (trust coefficient) must be > 0. Received: eta={eta}")
        if weight_decay is not None and float(weight_decay) < 0.0:
            raise ValueError(f"`weight_decay` must be >= 0. Received: weight_decay={weight_decay}")
        if not float(lr_1d_multiplier) >= 0.0:
            raise ValueError("`lr_1d_multiplier` must be >= 0. "
                             f"Received: lr_1d_multiplier={lr_1d_multiplier}")
        self.momentum = float(momentum)
        self.eta = float(eta)
        self.exclude_1d = bool(exclude_1d)
        self.lr_1d_multiplier = float(lr_1d_multiplier)
        self.clip_trust_ratio = bool(clip_trust_ratio)

    def build(self, variables):
        """Create one momentum buffer (zeros, same shape) per trainable variable."""
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")

    def _apply_weight_decay(self, variables):
        # The base class would apply *decoupled* decay here; LARS couples it to the gradient
        # inside update_step (official semantics), so nothing happens at this point.
        return

    def _is_excluded(self, variable) -> bool:
        return self.exclude_1d and len(variable.shape) <= 1

    def update_step(self, gradient, variable, learning_rate):
        """One LARS update of ``variable`` (see the module docstring for the rule)."""
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = ops.cast(gradient, dtype)
        mu = self.momentums[self._get_variable_index(variable)]
        if self._is_excluded(variable):
            lr = lr * ops.cast(self.lr_1d_multiplier, dtype)
        else:
            if self.weight_decay and self._use_weight_decay(variable):
                g = g + ops.cast(self.weight_decay, dtype) * variable
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            g_norm = ops.sqrt(ops.sum(ops.square(g)))
            ok = ops.logical_and(ops.greater(w_norm, 0.0), ops.greater(g_norm, 0.0))
            # Divide by a safe denominator so that neither branch produces inf/NaN.
            ratio = self.eta * w_norm / ops.where(ok, g_norm, ops.ones_like(g_norm))
            if self.clip_trust_ratio:
                ratio = ops.minimum(ratio / lr, 1.0)
            q = ops.where(ok, ratio, ops.ones_like(ratio))
            g = g * q
        self.assign(mu, mu * ops.cast(self.momentum, dtype) + g)
        self.assign_sub(variable, lr * mu)

    def get_config(self):
        config = super().get_config()
        config.update({
            "momentum": self.momentum,
            "eta": self.eta,
            "exclude_1d": self.exclude_1d,
            "lr_1d_multiplier": self.lr_1d_multiplier,
            "clip_trust_ratio": self.clip_trust_ratio,
        })
        return config


@keras.saving.register_keras_serializable(package=_SERIAL_PACKAGE)
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then cosine decay to a floor: the official Barlow Twins schedule.

    With ``s`` the optimizer step (0 for the first update), ``W = warmup_steps``,
    ``T = total_steps`` and ``end = end_lr_ratio * peak_lr``::

        lr(s) = peak_lr * s / W                                 for s < W
        q     = (1 + cos(pi * (s - W) / (T - W))) / 2           for W <= s <= T
        lr(s) = peak_lr * q + end * (1 - q)                     (end for s >= T)

    So ``lr(0) = 0`` (when ``W > 0``), ``lr(W) = peak_lr``, ``lr(T) = end``; the floor of 0.001x
    the peak is the official ``end_lr = base_lr * 0.001``.

    Args:
        peak_lr: learning rate at the end of the warm-up (``preset.learning_rate``, i.e.
            ``base_lr * batch_size / 256``), > 0.
        warmup_steps: optimizer steps of linear warm-up, >= 0.
        total_steps: optimizer steps of the whole run, >= ``warmup_steps``.
        end_lr_ratio: the floor as a fraction of ``peak_lr``. Defaults to ``0.001``.
        name: schedule name. Defaults to ``"warmup_cosine"``.
    """

    def __init__(self, peak_lr, warmup_steps, total_steps, end_lr_ratio=0.001,
                 name="warmup_cosine"):
        super().__init__()
        if not float(peak_lr) > 0:
            raise ValueError(f"`peak_lr` must be > 0. Received: peak_lr={peak_lr}")
        if int(warmup_steps) < 0 or int(total_steps) < int(warmup_steps):
            raise ValueError("Expected 0 <= warmup_steps <= total_steps. Received: "
                             f"warmup_steps={warmup_steps}, total_steps={total_steps}")
        if not 0.0 <= float(end_lr_ratio) <= 1.0:
            raise ValueError(f"`end_lr_ratio` must be in [0, 1]. Received: {end_lr_ratio}")
        self.peak_lr = float(peak_lr)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.end_lr_ratio = float(end_lr_ratio)
        self.name = name

    def __call__(self, step):
        s = ops.cast(step, "float32")
        peak = self.peak_lr
        end = peak * self.end_lr_ratio
        w = float(self.warmup_steps)
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        warm = peak * s / max(w, 1.0)
        frac = ops.clip((s - w) / decay_steps, 0.0, 1.0)
        q = 0.5 * (1.0 + ops.cos(math.pi * frac))
        cosine = peak * q + end * (1.0 - q)
        return ops.where(s < w, warm, cosine)

    def get_config(self):
        return {"peak_lr": self.peak_lr, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "end_lr_ratio": self.end_lr_ratio,
                "name": self.name}


def make_schedule(preset, steps_per_epoch: int) -> WarmupCosine:
    """The preset's :class:`WarmupCosine`: ``warmup_epochs`` of warm-up over ``epochs``.

    Args:
        preset: a ``bt_helpers.config.Preset`` (uses ``learning_rate``, ``warmup_epochs``,
            ``epochs``).
        steps_per_epoch: optimizer steps per epoch (``n_train // batch_size``), >= 1.

    Returns:
        The schedule, peaking at ``preset.learning_rate``.
    """
    steps_per_epoch = int(steps_per_epoch)
    if steps_per_epoch < 1:
        raise ValueError(f"`steps_per_epoch` must be >= 1. Received: {steps_per_epoch}. "
                         "Is the training set smaller than one batch?")
    return WarmupCosine(preset.learning_rate, warmup_steps=preset.warmup_epochs * steps_per_epoch,
                        total_steps=preset.epochs * steps_per_epoch)


def make_optimizer(preset, steps_per_epoch: int, **overrides):
    """The optimizer a preset asks for, driven by :func:`make_schedule`.

    ``preset.optimizer == "lars"`` gives :class:`LARS` (momentum 0.9, eta 0.001, the preset's
    weight decay, 1-D variables excluded); ``"lamb"`` gives ``keras.optimizers.Lamb`` (the 2021
    example's choice) with decoupled weight decay that skips variables named ``bias``, ``gamma``
    or ``beta``.

    Args:
        preset: a ``bt_helpers.config.Preset``.
        steps_per_epoch: optimizer steps per epoch, >= 1.
        **overrides: keyword arguments passed on to the optimizer (e.g. ``eta=0.02``).

    Returns:
        A ``keras.optimizers.Optimizer``.
    """
    schedule = make_schedule(preset, steps_per_epoch)
    if preset.optimizer == "lars":
        kwargs = dict(momentum=0.9, eta=0.001, weight_decay=preset.weight_decay)
        kwargs.update(overrides)
        return LARS(learning_rate=schedule, **kwargs)
    if preset.optimizer == "lamb":
        kwargs = dict(weight_decay=preset.weight_decay or None)
        kwargs.update(overrides)
        opt = keras.optimizers.Lamb(learning_rate=schedule, **kwargs)
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        return opt
    raise ValueError(f"Unknown optimizer {preset.optimizer!r}; expected 'lars' or 'lamb'.")
