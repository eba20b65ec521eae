"""Presets: the single place where sizes live.

A preset is a frozen, validated :class:`Preset`. Three exist:

* ``ci`` -- synthetic data and a tiny model, so that every notebook runs in well under a
  minute (nbval in CI uses it);
* ``teaching`` -- real CIFAR-10 when available and a CPU-sized model (ResNet-10, width 32,
  pretrained on 16x16 views), so that every notebook runs in at most ten minutes on a 2-core
  laptop;
* ``full`` -- GPU scale: ResNet-34 with the CIFAR stem, the paper's 8192-wide projector and
  hundreds of epochs.

Pick one with ``get_preset("teaching")`` or the ``BT_PRESET`` environment variable; with neither,
``full`` is chosen when TensorFlow sees a GPU and ``teaching`` otherwise. Every notebook starts
by printing the preset it uses.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

PRESET_ENV = "BT_PRESET"

#: Residual blocks per stage for each supported ResNet depth (``bt_helpers.models`` builds
#: them). ResNet-10 (one block per stage) is the teaching preset's CPU-sized encoder; 18 and
#: 34 are the paper-style ones.
STAGE_BLOCKS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
#: The supported stems (see ``bt_helpers.models.resnet``).
STEMS = ("cifar", "imagenet")


@dataclasses.dataclass(frozen=True)
class Preset:
    """Every size and hyper-parameter of one course configuration.

    Args:
        name: the preset's name (``"ci"``, ``"teaching"`` or ``"full"``).
        data_source: where images come from: ``"synthetic"`` (generated, see
            ``bt_helpers.data.make_synthetic``) or ``"auto"`` (CIFAR-10 from the Keras cache,
            ``BT_DATA_DIR`` or a download; synthetic with a loud warning when all fail).
        n_train: how many training images pretraining uses; ``None`` means all that remain
            after the validation split.
        n_val: how many images are held out (stratified) for validation / kNN monitoring.
        image_size: side of the square images fed to the network, in pixels.
        depth: ResNet depth, 10, 18 or 34 (:data:`STAGE_BLOCKS`).
        stem: ``"cifar"`` (3x3 stride-1 conv, no max-pool) or ``"imagenet"`` (7x7 stride-2
            conv + max-pool, what the 2021 example used on 32x32 images).
        width: channels of the first ResNet stage (64 in the paper's ResNets).
        proj_dims: widths of the projector's layers; the last one is D, the size of ``c``.
        batch_size: image pairs per optimisation step (the global batch).
        epochs: pretraining epochs.
        warmup_epochs: linear learning-rate warm-up before the cosine decay.
        optimizer: ``"lars"`` (the paper's) or ``"lamb"`` (the 2021 example's).
        base_lr: learning rate for a batch of 256; scaled linearly with ``batch_size``.
        weight_decay: decoupled weight decay (biases and BatchNorm parameters excluded).
        lambda_offdiag: weight of the redundancy-reduction term (0.0051 in the paper).
        recipe: augmentation recipe name in ``bt_helpers.augment`` (``"cifar"``,
            ``"official"`` or ``"original_2021"``).
        knn_every: run the kNN monitor on the validation split every this many epochs
            (0 turns it off).
        mixed_precision: compute in bfloat16 where the hardware does so natively (GPUs of
            compute capability 8.0 or more, CPUs with AVX512-BF16 or AMX), in float16 with
            loss scaling on older GPUs, in float32 elsewhere
            (``bt_helpers.train.use_gpu_features``).
        jit_compile: compile the training step with XLA (ignored on CPU unless faster).
        augment_on_device: make the two views inside the compiled training step instead of
            in ``tf.data``.
    """

    name: str
    data_source: str
    n_train: Optional[int]
    n_val: int
    image_size: int
    depth: int
    stem: str
    width: int
    proj_dims: tuple
    batch_size: int
    epochs: int
    warmup_epochs: int
    optimizer: str
    base_lr: float
    weight_decay: float
    lambda_offdiag: float
    recipe: str
    knn_every: int
    mixed_precision: bool
    jit_compile: bool
    augment_on_device: bool

    def __post_init__(self):
        _check(self.data_source in ("synthetic", "auto"), "data_source", self.data_source,
               "one of 'synthetic', 'auto'")
        _check(self.n_train is None or self.n_train >= 2, "n_train", self.n_train,
               "None or an integer >= 2")
        _check(self.n_val >= 0, "n_val", self.n_val, "an integer >= 0")
        _check(self.image_size >= 8, "image_size", self.image_size, "an integer >= 8")
        *depths, last_depth = STAGE_BLOCKS
        _check(self.depth in STAGE_BLOCKS, "depth", self.depth,
               f"{', '.join(map(str, depths))} or {last_depth}")
        _check(self.stem in STEMS, "stem", self.stem, " or ".join(map(repr, STEMS)))
        _check(self.width >= 1, "width", self.width, "an integer >= 1")
        _check(len(self.proj_dims) >= 1 and all(int(d) >= 1 for d in self.proj_dims),
               "proj_dims", self.proj_dims, "a non-empty tuple of positive integers")
        _check(self.batch_size >= 2, "batch_size", self.batch_size,
               "an integer >= 2 (the loss normalises over the batch)")
        _check(self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        _check(0 <= self.warmup_epochs <= self.epochs, "warmup_epochs", self.warmup_epochs,
               f"between 0 and epochs={self.epochs}")
        _check(self.optimizer in ("lars", "lamb"), "optimizer", self.optimizer,
               "'lars' or 'lamb'")
        _check(self.base_lr > 0, "base_lr", self.base_lr, "a positive number")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a number >= 0")
        _check(self.lambda_offdiag >= 0, "lambda_offdiag", self.lambda_offdiag,
               "a number >= 0")
        _check(self.knn_every >= 0, "knn_every", self.knn_every, "an integer >= 0")

    @property
    def proj_dim(self) -> int:
        """D, the embedding size: the width of the projector's last layer."""
        return int(self.proj_dims[-1])

    @property
    def learning_rate(self) -> float:
        """Peak learning rate: ``base_lr * batch_size / 256`` (linear scaling rule)."""
        return self.base_lr * self.batch_size / 256

    def replace(self, **changes) -> "Preset":
        """A copy with some fields changed (validated again), e.g. ``p.replace(epochs=3)``."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """One line naming the preset and its main sizes, printed by every notebook."""
        n_train = "all" if self.n_train is None else f"{self.n_train:,}"
        return (f"preset '{self.name}': {n_train} training images at {self.image_size}px, "
                f"ResNet-{self.depth} ({self.stem} stem, width {self.width}), "
                f"projector {'-'.join(str(d) for d in self.proj_dims)}, "
                f"batch {self.batch_size}, {self.epochs} epochs, {self.optimizer.upper()}")


def _check(ok: bool, field: str, value, expected: str) -> None:
    if not ok:
        raise ValueError(f"Preset field `{field}` must be {expected}. Received: {field}={value!r}")


PRESETS = {
    "ci": Preset(
        name="ci", data_source="synthetic", n_train=512, n_val=256, image_size=32,
        depth=18, stem="cifar", width=8, proj_dims=(64, 64), batch_size=64, epochs=2,
        warmup_epochs=0, optimizer="lars", base_lr=0.3, weight_decay=1.5e-6,
        lambda_offdiag=0.0051, recipe="cifar", knn_every=1, mixed_precision=False,
        jit_compile=False, augment_on_device=False,
    ),
    # Chosen by measurement on 2 CPU cores (README, `python benchmarks/bench_train.py teaching`):
    # a ResNet-10 at width 32 on 16x16 views trains at about 840 image pairs/s in bfloat16 on
    # a CPU with native bfloat16 (about 660 in float32), the former ResNet-18 at width 16 on
    # 32x32 images at about 46; evaluation feeds the encoder the stored 32x32 images. LARS at
    # base_lr 2.0 (solo-learn's 0.3 learns too slowly in so few steps); lambda 0.02 for the
    # 512-wide projector. Notebook 05 trains 6 epochs; the ten-minute benchmark 10.
    "teaching": Preset(
        name="teaching", data_source="auto", n_train=45_000, n_val=5_000, image_size=16,
        depth=10, stem="cifar", width=32, proj_dims=(512, 512), batch_size=256,
        epochs=6, warmup_epochs=1, optimizer="lars", base_lr=2.0, weight_decay=1.5e-6,
        lambda_offdiag=0.02, recipe="cifar", knn_every=1, mixed_precision=True,
        jit_compile=False, augment_on_device=False,
    ),
    "full": Preset(
        name="full", data_source="auto", n_train=None, n_val=5_000, image_size=32,
        depth=34, stem="cifar", width=64, proj_dims=(8192, 8192, 8192), batch_size=512,
        epochs=200, warmup_epochs=10, optimizer="lars", base_lr=0.3, weight_decay=1.5e-6,
        lambda_offdiag=0.0051, recipe="cifar", knn_every=10, mixed_precision=True,
        jit_compile=True, augment_on_device=True,
    ),
}


def gpu_available() -> bool:
    """Whether TensorFlow sees at least one GPU."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def default_preset_name() -> str:
    """``BT_PRESET`` if set, else ``"full"`` with a GPU and ``"teaching"`` without."""
    name = os.environ.get(PRESET_ENV, "").strip()
    if name:
        return name
    return "full" if gpu_available() else "teaching"


def get_preset(name: Optional[str] = None, **overrides) -> Preset:
    """The preset called ``name`` (default: :func:`default_preset_name`), with overrides.

    Args:
        name: ``"ci"``, ``"teaching"`` or ``"full"``; ``None`` reads ``BT_PRESET``.
        **overrides: fields to change, e.g. ``epochs=5``; validated like the preset itself.

    Returns:
        A frozen :class:`Preset`.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or a bad override.
    """
    name = default_preset_name() if name is None else name
    if name not in PRESETS:
        source = f" (from ${PRESET_ENV})" if os.environ.get(PRESET_ENV, "").strip() == name else ""
        raise ValueError(f"Unknown preset {name!r}{source}. Valid presets: "
                         f"{', '.join(sorted(PRESETS))}.")
    preset = PRESETS[name]
    return preset.replace(**overrides) if overrides else preset
