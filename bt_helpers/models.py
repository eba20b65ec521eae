"""ResNet-10/18/34 encoders, the projector and the Barlow Twins network (taught in notebook 04).

The encoder turns an image into a feature vector ``h`` of size ``8 * width``; the projector turns
``h`` into the embedding ``z`` of size ``proj_dim`` on which the Barlow Twins loss is computed.
After pretraining the projector is thrown away and evaluation (linear probe, kNN) uses the
encoder alone, which is why :func:`barlow_twins_network` keeps the two pieces apart.

* :func:`resnet` -- a ResNet-10, -18 or -34 with basic residual blocks, as a functional Keras
  model with readable layer names (``stem_conv``, ``stage2_block1_conv1``, ...), ending in global
  average pooling (no classifier head). Two stems:

  - ``"cifar"``: a 3x3 stride-1 conv, no max-pool; a 32x32 image enters the first residual stage
    at 32x32 (the usual choice for CIFAR, e.g. in solo-learn);
  - ``"imagenet"``: the 7x7 stride-2 conv + 3x3 stride-2 max-pool designed for 224x224 images,
    which the 2021 Keras example used on CIFAR-10: a 32x32 image is already 8x8 before the first
    residual block and 1x1 in the last stage.

* :func:`projector` -- ``Dense - BatchNorm - ReLU`` blocks then a final ``Dense``, as in the
  official code (``facebookresearch/barlowtwins``, ``main.py``).
* :func:`barlow_twins_network` / :func:`build_from_preset` -- encoder + projector, composed.
* :func:`feature_map_sizes`, :func:`min_input_size`, :func:`count_flops`,
  :func:`flops_by_layer` -- what each choice costs, for the notebook's tables.

Conventions. Convolutions and the dense layers followed by BatchNorm carry no bias (BatchNorm's
``beta`` plays that role). Convolutions use ``padding="same"``, so a stride-2 layer maps a side
of ``n`` pixels to ``ceil(n / 2)``. Initialisation and BatchNorm follow the PyTorch models the
paper used: He-normal (fan-out) conv kernels, BatchNorm ``momentum=0.9`` (PyTorch's 0.1) and
``epsilon=1e-5``, and by default the last BatchNorm of every residual branch starts with
``gamma = 0`` (``zero_init_residual=True`` in the official code), so each block starts as the
identity plus a shortcut. The encoder expects float images (the course feeds values in
``[0, 1]``); the BatchNorm after the first convolution makes it insensitive to their scale.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Optional, Sequence

import keras

# Blocks per stage for each depth, and the stems: defined with the presets that choose them.
from bt_helpers.config import STAGE_BLOCKS, STEMS
#: Stride of the first block of each stage; stage ``i`` has ``width * STAGE_MULTIPLIERS[i]`` channels.
STAGE_STRIDES = (1, 2, 2, 2)
STAGE_MULTIPLIERS = (1, 2, 4, 8)
#: BatchNorm settings shared by the encoder and the projector (PyTorch's defaults).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def _check_depth(depth) -> tuple:
    if depth not in STAGE_BLOCKS:
        raise ValueError(f"Unknown ResNet depth: received depth={depth!r}. "
                         f"Choose one of: {', '.join(str(d) for d in STAGE_BLOCKS)}.")
    return STAGE_BLOCKS[depth]


def _check_stem(stem) -> None:
    if stem not in STEMS:
        raise ValueError(f"Unknown stem: received stem={stem!r}. "
                         f"Choose one of: {', '.join(repr(s) for s in STEMS)}.")


def _stem_stride(stem: str) -> int:
    return 1 if stem == "cifar" else 4  # imagenet: conv stride 2, then max-pool stride 2


def min_input_size(stem: str) -> int:
    """The smallest image side the encoder accepts with this stem.

    It is the encoder's total downsampling factor (the stem's stride times 2 for each of the
    three strided stages): 8 for ``"cifar"`` and 32 for ``"imagenet"``. An image of exactly that
    side reaches the last stage as a 1x1 map; anything smaller would be downsampled past a single
    pixel. Larger sides need not be multiples of it (``padding="same"`` rounds up).

    Args:
        stem: ``"cifar"`` or ``"imagenet"``.

    Returns:
        The minimum height and width in pixels.
    """
    _check_stem(stem)
    return _stem_stride(stem) * 2 ** (len(STAGE_STRIDES) - 1)


class _Seeds:
    """Hands out one initializer seed per layer: ``None`` (random) or ``seed, seed + 1, ...``."""

    def __init__(self, seed: Optional[int]):
        self.seed = seed
        self.count = 0

    def next(self) -> Optional[int]:
        if self.seed is None:
            return None
        self.count += 1
        return self.seed + self.count - 1


def _conv(filters: int, kernel_size: int, stride: int, name: str, seed: Optional[int]):
    # He-normal over fan-out, as torchvision's ResNets: kaiming_normal_(mode="fan_out").
    init = keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal", seed=seed)
    return keras.layers.Conv2D(filters, kernel_size, strides=stride, padding="same",
                               use_bias=False, kernel_initializer=init, name=name)


def _bn(name: str, zero_gamma: bool = False, momentum: float = BN_MOMENTUM):
    return keras.layers.BatchNormalization(
        momentum=momentum, epsilon=BN_EPSILON, name=name,
        gamma_initializer="zeros" if zero_gamma else "ones")


def basic_block(x, filters: int, stride: int = 1, name: str = "block",
                zero_init_residual: bool = True, bn_momentum: float = BN_MOMENTUM,
                seed: Optional[int] = None):
    """One basic residual block: ``relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x))``.

    The shortcut is the identity when the shape is unchanged, and a 1x1 convolution with the
    block's stride followed by BatchNorm (a "projection shortcut") when ``stride != 1`` or the
    number of channels changes.

    Args:
        x: input tensor of shape ``(batch, height, width, channels)`` (a Keras tensor when
            building a functional model).
        filters: output channels.
        stride: stride of the first convolution and of the shortcut (1 or 2). Defaults to 1.
        name: prefix of the block's layer names (``{name}_conv1``, ``{name}_bn1``,
            ``{name}_relu1``, ``{name}_conv2``, ``{name}_bn2``, ``{name}_shortcut_conv``,
            ``{name}_shortcut_bn``, ``{name}_add``, ``{name}_out``). Defaults to ``"block"``.
        zero_init_residual: start ``{name}_bn2``'s ``gamma`` at zero, so that the block starts
            as its shortcut. Defaults to True, as in the official Barlow Twins code.
        bn_momentum: BatchNorm moving-average momentum. Defaults to 0.9.
        seed: seed of the kernel initializers (``None``: random). Defaults to None.

    Returns:
        The output tensor, shape ``(batch, ceil(height / stride), ceil(width / stride), filters)``.
    """
    seeds = _Seeds(seed)
    shortcut = x
    y = _conv(filters, 3, stride, f"{name}_conv1", seeds.next())(x)
    y = _bn(f"{name}_bn1", momentum=bn_momentum)(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(filters, 3, 1, f"{name}_conv2", seeds.next())(y)
    y = _bn(f"{name}_bn2", zero_gamma=zero_init_residual, momentum=bn_momentum)(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, stride, f"{name}_shortcut_conv", seeds.next())(x)
        shortcut = _bn(f"{name}_shortcut_bn", momentum=bn_momentum)(shortcut)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def resnet(depth: int = 18, stem: str = "cifar", width: int = 64,
           input_shape: Sequence = (32, 32, 3), name: Optional[str] = None,
           zero_init_residual: bool = True, bn_momentum: float = BN_MOMENTUM,
           seed: Optional[int] = None) -> keras.Model:
    """A ResNet-10, ResNet-18 or ResNet-34 encoder without classifier head.

    Stem, then four stages of basic residual blocks with ``width * (1, 2, 4, 8)`` channels and
    strides ``(1, 2, 2, 2)``, then global average pooling. With ``width=64`` and the
    ``"imagenet"`` stem this is torchvision's ``resnet18`` / ``resnet34`` without its ``fc``
    layer (11,176,512 / 21,284,672 trainable parameters).

    Args:
        depth: 10 (1, 1, 1, 1 blocks), 18 (2, 2, 2, 2) or 34 (3, 4, 6, 3). Defaults to 18.
        stem: ``"cifar"`` (3x3 stride-1 conv + BN + ReLU, no max-pool) or ``"imagenet"``
            (7x7 stride-2 conv + BN + ReLU + 3x3 stride-2 max-pool). Defaults to ``"cifar"``.
        width: channels of the first stage (64 in the paper's ResNets). Defaults to 64.
        input_shape: ``(height, width, channels)`` of the images; height and width may be
            ``None`` (any size) or at least :func:`min_input_size` (8 for ``"cifar"``, 32 for
            ``"imagenet"``). Defaults to ``(32, 32, 3)``.
        name: model name. Defaults to ``"resnet{depth}_{stem}"``, plus ``"_w{width}"`` when
            ``width != 64``.
        zero_init_residual: start the last BatchNorm of each residual branch with
            ``gamma = 0``. Defaults to True.
        bn_momentum: BatchNorm moving-average momentum. Defaults to 0.9 (PyTorch's 0.1).
        seed: seed of the kernel initializers (``None``: random). Defaults to None.

    Returns:
        A functional ``keras.Model`` mapping ``(batch, height, width, channels)`` images to
        ``(batch, 8 * width)`` features.

    Raises:
        ValueError: for an unknown depth or stem (the message lists the choices), a width
            below 1, or an input smaller than the stem's minimum (the message gives it).
    """
    blocks = _check_depth(depth)
    _check_stem(stem)
    if int(width) != width or width < 1:
        raise ValueError(f"`width` must be a positive integer. Received: width={width!r}")
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError("`input_shape` must be (height, width, channels). "
                         f"Received: input_shape={input_shape!r}")
    smallest = min_input_size(stem)
    if any(side is not None and side < smallest for side in input_shape[:2]):
        raise ValueError(
            f"ResNet-{depth} with the {stem!r} stem downsamples by {smallest}, so it needs "
            f"images of at least {smallest}x{smallest} pixels. Received: "
            f"input_shape={input_shape!r}. Use larger images"
            + (" or stem='cifar' (minimum 8x8)." if stem == "imagenet" else "."))
    if name is None:
        name = f"resnet{depth}_{stem}" + ("" if width == 64 else f"_w{width}")

    inputs = keras.Input(shape=input_shape, name="images")
    if stem == "cifar":
        x = _conv(width, 3, 1, "stem_conv", seed)(inputs)
    else:
        x = _conv(width, 7, 2, "stem_conv", seed)(inputs)
    x = _bn("stem_bn", momentum=bn_momentum)(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    if stem == "imagenet":
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    n_built = 0
    for stage, (n_blocks, stride, mult) in enumerate(
            zip(blocks, STAGE_STRIDES, STAGE_MULTIPLIERS), start=1):
        for block in range(1, n_blocks + 1):
            n_built += 1  # each block draws at most 3 seeds: seed + 10 * n_built + (0, 1, 2)
            x = basic_block(x, width * mult, stride if block == 1 else 1,
                            name=f"stage{stage}_block{block}",
                            zero_init_residual=zero_init_residual, bn_momentum=bn_momentum,
                            seed=None if seed is None else seed + 10 * n_built)
    features = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, features, name=name)


def projector(dims: Sequence[int], input_dim: Optional[int] = None, name: str = "projector",
              final_bias: bool = False, bn_momentum: float = BN_MOMENTUM,
              seed: Optional[int] = None) -> keras.Model:
    """The projector: ``(Dense - BatchNorm - ReLU) x (len(dims) - 1)``, then a final ``Dense``.

    The dense layers followed by BatchNorm have no bias. The last layer has none either by
    default, as in the official code (``nn.Linear(..., bias=False)``): the loss standardises
    every feature of ``z`` over the batch, which subtracts any constant bias again.

    Args:
        dims: widths of the layers, e.g. ``(8192, 8192, 8192)`` in the paper, ``(5000, 5000,
            5000)`` in the 2021 Keras example; ``dims[-1]`` is ``proj_dim``, the size ``D`` of
            the cross-correlation matrix ``c``.
        input_dim: size of the encoder features. ``None`` builds the model on its first call.
            Defaults to None.
        name: model name; layers are called ``{name}_dense1``, ``{name}_bn1``,
            ``{name}_relu1``, ... Defaults to ``"projector"``.
        final_bias: give the last ``Dense`` a bias (the 2021 example did). Defaults to False.
        bn_momentum: BatchNorm moving-average momentum. Defaults to 0.9.
        seed: seed of the kernel initializers (``None``: random). Defaults to None.

    Returns:
        A ``keras.Sequential`` mapping ``(batch, input_dim)`` to ``(batch, dims[-1])``.

    Raises:
        ValueError: if ``dims`` is empty or holds a non-positive width.
    """
    dims = tuple(dims)
    if not dims or any(int(d) != d or d < 1 for d in dims):
        raise ValueError("`dims` must be a non-empty sequence of positive integers, e.g. "
                         f"(8192, 8192, 8192). Received: dims={dims!r}")
    seeds = _Seeds(seed)
    layers = [] if input_dim is None else [keras.Input(shape=(int(input_dim),), name="features")]
    for i, units in enumerate(dims, start=1):
        last = i == len(dims)
        init = keras.initializers.GlorotUniform(seed=seeds.next())
        layers.append(keras.layers.Dense(int(units), use_bias=final_bias if last else False,
                                         kernel_initializer=init, name=f"{name}_dense{i}"))
        if not last:
            layers.append(_bn(f"{name}_bn{i}", momentum=bn_momentum))
            layers.append(keras.layers.ReLU(name=f"{name}_relu{i}"))
    return keras.Sequential(layers, name=name)


@dataclasses.dataclass(frozen=True)
class BarlowTwinsNetwork:
    """The encoder, the projector and the composed ``images -> z`` model (weights shared).

    Attributes:
        encoder: ``(batch, height, width, channels)`` images to ``(batch, feature_dim)``
            features ``h``; evaluation uses this model alone.
        projector: ``(batch, feature_dim)`` features to ``(batch, proj_dim)`` embeddings ``z``;
            used only by the pretraining loss.
        model: ``projector(encoder(images))``, the model trained with the Barlow Twins loss.
    """

    encoder: keras.Model
    projector: keras.Model
    model: keras.Model

    @property
    def feature_dim(self) -> int:
        """Size of the encoder's features ``h`` (``8 * width`` for the ResNets here)."""
        return int(self.encoder.output.shape[-1])

    @property
    def proj_dim(self) -> int:
        """``D``, the size of the embeddings ``z`` and of the cross-correlation matrix."""
        return int(self.model.output.shape[-1])

    def __call__(self, images, training: bool = False):
        """``z`` for a batch of images: ``(batch, height, width, channels) -> (batch, D)``."""
        return self.model(images, training=training)


def barlow_twins_network(encoder: keras.Model, projector: keras.Model,
                         name: str = "barlow_twins",
                         input_shape: Optional[Sequence] = None) -> BarlowTwinsNetwork:
    """Compose an encoder and a projector, keeping both reachable.

    Args:
        encoder: a model with a fixed-rank image input and ``(batch, feature_dim)`` output,
            e.g. from :func:`resnet`.
        projector: a model taking ``(batch, feature_dim)``, e.g. from :func:`projector`.
        name: name of the composed model. Defaults to ``"barlow_twins"``.
        input_shape: ``(height, width, channels)`` of the composed model's images; ``None``
            takes the encoder's. Defaults to None.

    Returns:
        A :class:`BarlowTwinsNetwork`; its three models share their weights.

    Raises:
        ValueError: if the encoder's output is not ``(batch, features)`` or the projector was
            built for another feature size.
    """
    out_shape = tuple(encoder.output.shape)
    if len(out_shape) != 2:
        raise ValueError("The encoder must output (batch, features); received an encoder with "
                         f"output shape {out_shape}. End it with global average pooling.")
    if projector.built and projector.inputs:
        expected = projector.inputs[0].shape[-1]
        if expected is not None and expected != out_shape[-1]:
            raise ValueError(f"The projector takes {expected} features but the encoder gives "
                             f"{out_shape[-1]}. Build the projector with "
                             f"input_dim={out_shape[-1]}.")
    shape = tuple(encoder.input.shape[1:]) if input_shape is None else tuple(input_shape)
    images = keras.Input(shape=shape, name="images")
    z = projector(encoder(images))
    return BarlowTwinsNetwork(encoder, projector, keras.Model(images, z, name=name))


def build_from_preset(preset, seed: Optional[int] = None,
                      any_size: bool = False) -> BarlowTwinsNetwork:
    """The encoder and projector a preset describes, composed.

    Args:
        preset: a :class:`bt_helpers.config.Preset` (uses ``depth``, ``stem``, ``width``,
            ``image_size`` and ``proj_dims``).
        seed: seed of the kernel initializers (``None``: random). Defaults to None.
        any_size: build the encoder for images of any size (``.model`` still takes
            ``image_size``): pretraining feeds it ``image_size`` views, evaluation the stored
            images as they are (``bt_helpers.train.build_model``). Its weights are those of
            the fixed-size encoder with the same seed. :func:`count_flops` needs a fixed size:
            count ``.model``. Defaults to False.

    Returns:
        A :class:`BarlowTwinsNetwork` for ``(batch, image_size, image_size, 3)`` images.
    """
    size = preset.image_size
    encoder = resnet(preset.depth, preset.stem, preset.width,
                     input_shape=(None, None, 3) if any_size else (size, size, 3), seed=seed)
    head = projector(preset.proj_dims, input_dim=8 * preset.width,
                     seed=None if seed is None else seed + 100_000)
    return barlow_twins_network(encoder, head, input_shape=(size, size, 3))


class FeatureMap(NamedTuple):
    """Size of the activations after one part of the encoder."""

    name: str
    size: int
    channels: int


def feature_map_sizes(stem: str = "cifar", input_size: int = 32, width: int = 64,
                      channels: int = 3) -> list:
    """The spatial size and channels after each part of the encoder, computed analytically.

    The same for ResNet-18 and ResNet-34 (they differ in blocks per stage, not in strides).

    Args:
        stem: ``"cifar"`` or ``"imagenet"``. Defaults to ``"cifar"``.
        input_size: side of the square input images. Defaults to 32.
        width: channels of the first stage. Defaults to 64.
        channels: channels of the input images. Defaults to 3.

    Returns:
        A list of :class:`FeatureMap` ``(name, size, channels)``: ``"input"``, ``"stem conv"``,
        ``"stem max-pool"`` (``"imagenet"`` only), ``"stage1"`` ... ``"stage4"``.

    Raises:
        ValueError: for an unknown stem or an input smaller than :func:`min_input_size`.
    """
    smallest = min_input_size(stem)
    if input_size < smallest:
        raise ValueError(f"The {stem!r} stem needs images of at least {smallest}x{smallest} "
                         f"pixels. Received: input_size={input_size}")
    rows = [FeatureMap("input", input_size, channels)]
    size = input_size if stem == "cifar" else math.ceil(input_size / 2)
    rows.append(FeatureMap("stem conv", size, width))
    if stem == "imagenet":
        size = math.ceil(size / 2)
        rows.append(FeatureMap("stem max-pool", size, width))
    for stage, (stride, mult) in enumerate(zip(STAGE_STRIDES, STAGE_MULTIPLIERS), start=1):
        size = math.ceil(size / stride)
        rows.append(FeatureMap(f"stage{stage}", size, width * mult))
    return rows


def flops_by_layer(model: keras.Model) -> dict:
    """FLOPs per image of every ``Conv2D`` and ``Dense`` layer, nested models included.

    Convention: one multiply-add counts as 2 FLOPs, and only the convolutions and dense layers
    are counted (``2 * out_height * out_width * k_h * k_w * in_channels / groups *
    out_channels`` and ``2 * in_features * out_features``). Biases, BatchNorm, ReLU, residual
    additions and pooling are left out: together they are below 1% of a ResNet's total. Halve
    the numbers to compare with tables that quote multiply-adds ("MACs"): torchvision's
    ResNet-18 is 1.82 GMACs at 224x224.

    Args:
        model: a built Keras model whose convolutions have a known output size (build the
            encoder with a fixed ``input_shape``).

    Returns:
        A dict from layer name (``"encoder_name/layer_name"`` for nested models) to FLOPs.

    Raises:
        ValueError: if the model is not built or a convolution's output size is unknown.
    """
    flops = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            for key, value in flops_by_layer(layer).items():
                flops[f"{layer.name}/{key}"] = value
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            if not layer.built:
                raise ValueError(f"Layer {layer.name!r} is not built: call the model once or "
                                 "give it an input shape before counting FLOPs.")
            macs_per_position = math.prod(layer.kernel.shape)
            if isinstance(layer, keras.layers.Conv2D):
                out_h, out_w = layer.output.shape[1:3]
                if out_h is None or out_w is None:
                    raise ValueError(f"Layer {layer.name!r} has an unknown output size "
                                     f"{tuple(layer.output.shape)}: build the encoder with a "
                                     "fixed input_shape to count FLOPs.")
                macs = macs_per_position * out_h * out_w
            else:
                macs = macs_per_position
            flops[layer.name] = 2 * int(macs)
    return flops


def count_flops(model: keras.Model) -> int:
    """Total FLOPs per image (2 per multiply-add, convolutions and dense layers only).

    See :func:`flops_by_layer` for the convention.

    Args:
        model: a built Keras model, e.g. from :func:`resnet` or :attr:`BarlowTwinsNetwork.model`.

    Returns:
        FLOPs for one image's forward pass (a backward pass costs about twice as much).
    """
    return sum(flops_by_layer(model).values())
