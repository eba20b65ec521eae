"""Images for the course: CIFAR-10, an image folder or tarball, and a synthetic dataset.

Everything returns ``uint8`` images of shape ``(N, 32, 32, 3)`` and ``int64`` labels ``(N,)``;
:func:`load_data` bundles them, with a seeded stratified validation split, into an
:class:`ImageData`. Every notebook opens with :func:`start`, which picks the preset, loads
its data and prints the preset, the data source, the date and the device.

Where the images come from (``source``):

* ``"cifar10"`` -- :func:`load_cifar10`: the Keras cache (``~/.keras/datasets``, the files
  ``keras.datasets.cifar10.load_data`` downloads), downloading it when it is missing;
* ``"folder"`` -- :func:`load_image_folder`: a folder laid out as ``train/<class>/*.jpg|png``
  (optionally ``test/<class>/...``), or a ``.tar.gz`` of one, named by ``data_dir`` or the
  ``BT_DATA_DIR`` environment variable; decoded arrays are cached (``BT_CACHE_DIR``);
* ``"synthetic"`` -- :func:`make_synthetic`: shapes and textures generated here, for tests
  and CI (no download, a few seconds);
* ``"auto"`` -- CIFAR-10 from ``data_dir`` / ``BT_DATA_DIR``, then the Keras cache, then the
  download; only when all three fail it warns loudly (what failed, how to set ``BT_DATA_DIR``)
  and falls back to the synthetic images, with ``source="synthetic"`` so that no notebook
  speaks of CIFAR-10 while it trains on shapes.

Bad input raises :class:`DataError` (a ``ValueError``) naming the path and what was expected;
a damaged cache file raises :class:`CorruptCacheError`, which names the file to delete.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import os
import pickle
import re
import socket
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

#: The ``source`` values :func:`load_data` accepts.
SOURCES = ("auto", "cifar10", "folder", "synthetic")
#: Environment variable naming a CIFAR-10 image folder or ``.tar.gz`` (read by ``load_data``).
DATA_DIR_ENV = "BT_DATA_DIR"
#: Environment variable overriding where decoded image folders are cached.
CACHE_DIR_ENV = "BT_CACHE_DIR"

CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
                       "dog", "frog", "horse", "ship", "truck")
SYNTHETIC_CLASS_NAMES = ("disc", "ring", "square", "triangle", "cross",
                         "stripes-h", "stripes-v", "checker", "dots", "gradient")
#: Training images generated for ``source="synthetic"`` when ``n_train`` is None.
SYNTHETIC_N_TRAIN = 5000
#: Test images generated for ``source="synthetic"``.
SYNTHETIC_N_TEST = 1000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

# What keras.datasets.cifar10.load_data downloads, and where Keras 3 keeps it.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
_KERAS_FNAME = "cifar-10-batches-py-target"
_CIFAR10_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                    "data_batch_5", "test_batch")
_DOWNLOAD_TIMEOUT_S = 30  # per socket operation, so that a blocked network fails, not hangs
_CACHE_FORMAT = 1
_JUNK_FILES = ("Thumbs.db", "desktop.ini")


class DataError(ValueError):
    """Images that cannot be loaded: a missing path, a wrong layout, bad image files."""


class CorruptCacheError(DataError):
    """A cache file is damaged; the message names the file or folder to delete.

    Attributes:
        path: the file or folder to delete.
    """

    def __init__(self, path, problem: str):
        self.path = str(path)
        super().__init__(f"The cache at {self.path} is damaged ({problem}). Delete it "
                         f"(rm -r '{self.path}') and load again: it is rebuilt from the source.")


class DownloadError(DataError):
    """The CIFAR-10 download failed (offline, blocked, or interrupted)."""


# --- the dataset container -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ImageData:
    """A dataset split into train / validation / test, with where it came from.

    Args:
        x_train: training images, ``uint8`` of shape ``(n_train, height, width, 3)``.
        y_train: their class ids, ``int64`` of shape ``(n_train,)``.
        x_val: held-out validation images (stratified, seeded), ``(n_val, height, width, 3)``;
            empty when ``n_val=0``.
        y_val: their class ids, ``(n_val,)``.
        x_test: test images ``(n_test, height, width, 3)``, or None when the source has none
            (an image folder without ``test/``).
        y_test: their class ids ``(n_test,)``, or None.
        class_names: one name per class id, e.g. ``("airplane", ..., "truck")``.
        source: ``"cifar10"``, ``"folder"`` or ``"synthetic"``.
        origin: where the images were read or how they were made (a path, a URL, a seed).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: Optional[np.ndarray]
    y_test: Optional[np.ndarray]
    class_names: tuple
    source: str
    origin: str

    def __post_init__(self):
        names = tuple(str(c) for c in self.class_names)
        object.__setattr__(self, "class_names", names)
        if self.source not in ("cifar10", "folder", "synthetic"):
            raise ValueError(f"ImageData.source must be 'cifar10', 'folder' or 'synthetic'. "
                             f"Received: source={self.source!r}")
        if (self.x_test is None) != (self.y_test is None):
            raise ValueError("ImageData: give both x_test and y_test, or neither.")
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x is None:
                continue
            x, y = np.asarray(x), np.asarray(y)
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
                raise ValueError(f"ImageData.x_{split} must be uint8 of shape (N, height, width, "
                                 f"3). Received: dtype={x.dtype}, shape={x.shape}")
            if y.shape != (len(x),):
                raise ValueError(f"ImageData.y_{split} must have shape ({len(x)},) like x_{split}. "
                                 f"Received: shape={y.shape}")
            if len(y) and (y.min() < 0 or y.max() >= len(names)):
                raise ValueError(f"ImageData.y_{split} holds class ids outside "
                                 f"0..{len(names) - 1}. Received: min={y.min()}, max={y.max()}")
            object.__setattr__(self, f"x_{split}", x)
            object.__setattr__(self, f"y_{split}", y.astype(np.int64, copy=False))

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(class_names)``."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        """``(height, width, channels)`` of one image."""
        return tuple(self.x_train.shape[1:])

    def class_counts(self, split: str = "train") -> np.ndarray:
        """Images per class in ``split`` ("train", "val" or "test"), shape ``(num_classes,)``."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test'. Received: split={split!r}")
        y = getattr(self, f"y_{split}")
        if y is None:
            return np.zeros(self.num_classes, np.int64)
        return np.bincount(y, minlength=self.num_classes)

    def describe(self) -> str:
        """One line: which data (source, origin) and how many images in each split."""
        label = {"cifar10": "CIFAR-10", "folder": "image folder",
                 "synthetic": "SYNTHETIC shapes and textures (not CIFAR-10)"}[self.source]
        n_test = "no test split" if self.x_test is None else f"{len(self.x_test):,} test"
        h, w, c = self.image_shape
        return (f"data: {label} from {self.origin}: {len(self.x_train):,} train / "
                f"{len(self.x_val):,} val / {n_test} images of {h}x{w}x{c}, "
                f"{self.num_classes} classes")

    def summary(self) -> str:
        """A table of images per class in each split (a multi-line string, ready to print)."""
        splits = ["train", "val"] + ([] if self.x_test is None else ["test"])
        counts = {s: self.class_counts(s) for s in splits}
        width = max(5, *(len(c) for c in self.class_names))
        lines = [f"{'class':<{width}} " + " ".join(f"{s:>8}" for s in splits)]
        for i, name in enumerate(self.class_names):
            lines.append(f"{name:<{width}} " + " ".join(f"{counts[s][i]:>8,}" for s in splits))
        lines.append(f"{'total':<{width}} " + " ".join(f"{counts[s].sum():>8,}" for s in splits))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ImageData({self.describe()})"


# --- synthetic shapes and textures ---------------------------------------------------------------


def make_synthetic(n_train: int = 5000, n_test: int = 1000, seed: int = 0, image_size: int = 32):
    """Generate a labelled dataset of shapes and textures, deterministic by ``seed``.

    Ten classes (:data:`SYNTHETIC_CLASS_NAMES`): five shapes (disc, ring, square, triangle,
    cross) at a random position and scale on a plain background, and five textures
    (horizontal stripes, vertical stripes, checker, dots, a smooth gradient) with a random
    period and phase or direction. Foreground and background colours are drawn at random
    for every image, independently of the class, and a little Gaussian noise is added, so
    the mean colour says almost nothing about the class: a model has to look at shape.
    Each class has the same number of images (to within one).

    Args:
        n_train: number of training images. Defaults to 5000.
        n_test: number of test images (drawn from an independent stream, so ``n_test``
            does not change the training images). Defaults to 1000.
        seed: seed of the generator. Defaults to 0.
        image_size: side of the square images in pixels. Defaults to 32.

    Returns:
        ``(x_train, y_train, x_test, y_test, class_names)``: ``uint8`` images of shape
        ``(n, image_size, image_size, 3)``, ``int64`` labels of shape ``(n,)`` and a tuple of
        10 class names.
    """
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be an integer >= 0. Received: {name}={value!r}")
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 pixels. Received: image_size={image_size}")
    train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
    x_train, y_train = _synthetic_images(int(n_train), np.random.default_rng(train_seq), image_size)
    x_test, y_test = _synthetic_images(int(n_test), np.random.default_rng(test_seq), image_size)
    return x_train, y_train, x_test, y_test, SYNTHETIC_CLASS_NAMES


def _synthetic_images(n: int, rng: np.random.Generator, size: int, chunk: int = 4096):
    labels = rng.permutation(np.arange(n) % len(SYNTHETIC_CLASS_NAMES)).astype(np.int64)
    images = np.empty((n, size, size, 3), np.uint8)
    for start in range(0, n, chunk):
        y = labels[start:start + chunk]
        m = len(y)
        bg = rng.random((m, 3), dtype=np.float32)
        fg = rng.random((m, 3), dtype=np.float32)
        for _ in range(50):  # redraw foregrounds too close to their background
            close = np.linalg.norm(fg - bg, axis=1) < 0.45
            if not close.any():
                break
            fg[close] = rng.random((int(close.sum()), 3), dtype=np.float32)
        mask = _synthetic_masks(y, rng, size)[..., None]  # (m, size, size, 1)
        img = bg[:, None, None, :] + (fg - bg)[:, None, None, :] * mask  # (m, size, size, 3)
        img += 0.04 * rng.standard_normal(img.shape, dtype=np.float32)
        images[start:start + m] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return images, labels


def _soft(signed_distance):
    """Coverage of a pixel from its signed distance (pixels) to an edge: anti-aliased mask."""
    return np.clip(0.5 + signed_distance, 0.0, 1.0)


def _synthetic_masks(labels: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Foreground coverage in [0, 1] of shape ``(len(labels), size, size)``, class by class."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    yy, xx = coords[None, :, None], coords[None, None, :]  # (1, size, 1), (1, 1, size)
    masks = np.empty((len(labels), size, size), np.float32)
    for c in range(len(SYNTHETIC_CLASS_NAMES)):
        idx = np.flatnonzero(labels == c)
        if idx.size == 0:
            continue

        def draw(low, high):
            return rng.uniform(low, high, (idx.size, 1, 1)).astype(np.float32)

        if c <= 4:  # a shape of "radius" r centred at (cx, cy)
            r = draw(0.18, 0.36) * size
            cx = r + draw(0, 1) * (size - 2 * r)
            cy = r + draw(0, 1) * (size - 2 * r)
            dx, dy = xx - cx, yy - cy
            if c == 0:    # disc
                m = _soft(r - np.hypot(dx, dy))
            elif c == 1:  # ring
                t = np.maximum(0.3 * r, 1.5)
                m = _soft(t / 2 - np.abs(np.hypot(dx, dy) - (r - t / 2)))
            elif c == 2:  # square
                m = _soft(0.8 * r - np.maximum(np.abs(dx), np.abs(dy)))
            elif c == 3:  # upright equilateral triangle, circumradius 1.2 r
                dy = dy - 0.3 * r
                edges = np.maximum(np.maximum(dy, 0.866 * dx - 0.5 * dy), -0.866 * dx - 0.5 * dy)
                m = _soft(0.6 * r - edges)
            else:         # cross (plus sign)
                w = np.maximum(0.22 * r, 1.2)
                m = _soft(np.maximum(np.minimum(w - np.abs(dx), r - np.abs(dy)),
                                     np.minimum(w - np.abs(dy), r - np.abs(dx))))
        elif c <= 7:      # stripes-h, stripes-v, checker: square waves of random period / phase
            period = draw(5, 9)
            sx = np.sin(2 * np.pi * (xx + draw(0, 1) * period) / period)
            sy = np.sin(2 * np.pi * (yy + draw(0, 1) * period) / period)
            m = _soft(2.0 * (sy if c == 5 else sx if c == 6 else sx * sy))
        elif c == 8:      # dots on a square grid
            spacing = draw(5, 9)
            radius = spacing * draw(0.2, 0.32)
            gx = np.mod(xx + draw(0, 1) * spacing, spacing) - spacing / 2
            gy = np.mod(yy + draw(0, 1) * spacing, spacing) - spacing / 2
            m = _soft(radius - np.hypot(gx, gy))
        else:             # gradient: a linear ramp in a random direction
            angle = draw(0, 2 * np.pi)
            length = draw(0.6, 1.2) * size
            proj = (xx - size / 2) * np.cos(angle) + (yy - size / 2) * np.sin(angle)
            m = np.clip(0.5 + proj / length, 0.0, 1.0)
        masks[idx] = m
    return masks


# --- stratified split ----------------------------------------------------------------------------


def stratified_split(x, y, n_val: int, seed: int = 0):
    """Hold out ``n_val`` examples with the same class proportions as ``y``, seeded.

    Every class gives ``n_val * count / len(y)`` examples rounded down or up (largest
    remainders get the extra ones), so per-class proportions match to within one example.
    The two parts are disjoint, together hold every example, and each is shuffled.

    Args:
        x: examples, shape ``(N, ...)``.
        y: integer class ids, shape ``(N,)``.
        n_val: how many examples to hold out, 0 to N.
        seed: seed of the shuffle. Defaults to 0.

    Returns:
        ``(x_train, y_train, x_val, y_val)`` with ``N - n_val`` and ``n_val`` examples.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length. Received: len(x)={len(x)}, "
                         f"len(y)={len(y)}")
    train_idx, val_idx = _stratified_indices(y, n_val, np.random.default_rng(seed))
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def _stratified_indices(y: np.ndarray, n_val: int, rng: np.random.Generator):
    n = len(y)
    if int(n_val) != n_val or not 0 <= n_val <= n:
        raise ValueError(f"n_val must be an integer between 0 and the number of examples ({n}). "
                         f"Received: n_val={n_val!r}")
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * (n_val / max(n, 1))
    take = np.floor(quota).astype(np.int64)
    extra = int(n_val) - int(take.sum())
    take[np.argsort(-(quota - take), kind="stable")[:extra]] += 1
    val_parts = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]
    val_idx = np.concatenate(val_parts) if val_parts else np.zeros(0, np.int64)
    in_val = np.zeros(n, bool)
    in_val[val_idx] = True
    return rng.permutation(np.flatnonzero(~in_val)), rng.permutation(val_idx)


# --- CIFAR-10 from the Keras cache or a download -------------------------------------------------


def load_cifar10(cache_dir=None, download: bool = True):
    """CIFAR-10 as ``keras.datasets.cifar10.load_data`` keeps it, downloading it when missing.

    Looks for the batches Keras extracted under ``<cache_dir>/datasets`` (Keras 3:
    ``cifar-10-batches-py-target/cifar-10-batches-py/``; older Keras and ``tf.keras``:
    ``cifar-10-batches-py/``), then for the downloaded archive next to them, and otherwise
    downloads it with ``keras.utils.get_file`` (the same file, checksum and place as
    ``keras.datasets.cifar10.load_data``). A network that does not answer fails after
    about 30 seconds instead of hanging.

    Args:
        cache_dir: the Keras home folder (files live in ``<cache_dir>/datasets``). Defaults
            to ``$KERAS_HOME`` or ``~/.keras`` (and ``/tmp/.keras``, where Keras goes when
            the home folder is read-only).
        download: download the archive when nothing is cached. Defaults to True.

    Returns:
        ``(x_train, y_train, x_test, y_test, class_names)``: ``uint8`` images of shape
        ``(50000, 32, 32, 3)`` and ``(10000, 32, 32, 3)``, ``int64`` labels of shape
        ``(N,)`` and the 10 class names.

    Raises:
        CorruptCacheError: a cached file is damaged (the message names what to delete).
        DataError: nothing is cached and ``download=False``.
        DownloadError: the download failed.
    """
    try:
        arrays, _ = _cifar10_from_keras_cache(cache_dir)
    except DataError as err:
        if isinstance(err, CorruptCacheError) or not download:
            raise
        arrays, _ = _download_cifar10(cache_dir)
    return arrays


def _keras_datasets_dirs(cache_dir) -> list:
    if cache_dir is not None:
        return [Path(cache_dir).expanduser() / "datasets"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    tmp = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
    dirs = [Path(home).expanduser() / "datasets", Path(tmp) / ".keras" / "datasets"]
    return list(dict.fromkeys(dirs))


def _cifar10_from_keras_cache(cache_dir):
    """``(arrays, origin)`` from the Keras cache; DataError when nothing is there."""
    folders = _keras_datasets_dirs(cache_dir)
    for datasets in folders:
        for batches in (datasets / _KERAS_FNAME / "cifar-10-batches-py",
                        datasets / "cifar-10-batches-py"):
            if batches.is_dir():
                return _read_cifar10_batches(batches), str(batches)
        for archive in (datasets / f"{_KERAS_FNAME}_archive", datasets / "cifar-10-python.tar.gz",
                        datasets / "cifar-10-batches-py.tar.gz"):
            if archive.is_file():
                target = datasets / _KERAS_FNAME
                _extract_cifar10_archive(archive, target)
                return _read_cifar10_batches(target / "cifar-10-batches-py"), str(archive)
    raise DataError(f"no CIFAR-10 in {' or '.join(str(d) for d in folders)} (looked for the "
                    f"folders {_KERAS_FNAME}/ and cifar-10-batches-py/, and the archive).")


def _extract_cifar10_archive(archive: Path, target: Path) -> None:
    sha = hashlib.sha256()
    with open(archive, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    if sha.hexdigest() != _CIFAR10_SHA256:
        raise CorruptCacheError(archive, "its SHA-256 is not that of cifar-10-python.tar.gz: "
                                "a partial or different download")
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(target, filter="data")
            else:  # Python without extraction filters; the checksum vouches for the archive
                tar.extractall(target)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise CorruptCacheError(archive, f"cannot extract it: {err}") from err


def _download_cifar10(cache_dir):
    """Download with ``keras.utils.get_file``; ``(arrays, origin)`` or DownloadError."""
    base = Path(cache_dir).expanduser() if cache_dir is not None else \
        _keras_datasets_dirs(None)[0].parent
    import keras

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        folder = keras.utils.get_file(fname=_KERAS_FNAME, origin=CIFAR10_URL, extract=True,
                                      file_hash=_CIFAR10_SHA256, cache_dir=str(base))
    except Exception as err:  # noqa: BLE001 -- urllib, socket and Keras raise many kinds
        message = " ".join(str(err).split()) or type(err).__name__
        if message.startswith("URL fetch failure") and " -- " in message:  # Keras repeats the URL
            message = message.split(" -- ", 1)[1]
        raise DownloadError(f"downloading {CIFAR10_URL} failed: {message}") from err
    finally:
        socket.setdefaulttimeout(previous)
    batches = Path(folder) / "cifar-10-batches-py"
    return _read_cifar10_batches(batches), f"{CIFAR10_URL} (downloaded to {batches})"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR-10 batches (dicts of numpy arrays and lists) and nothing else."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = module.replace("numpy.core", "numpy._core", 1)
        return super().find_class(module, name)


def _read_cifar10_batches(folder: Path):
    missing = [b for b in _CIFAR10_BATCHES if not (folder / b).is_file()]
    if missing:
        raise CorruptCacheError(folder, f"{', '.join(missing)} missing")
    xs, ys = [], []
    for name in _CIFAR10_BATCHES:
        path = folder / name
        try:
            with open(path, "rb") as f:
                batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
            data = np.asarray(batch[b"data"])
            labels = np.asarray(batch[b"labels"], dtype=np.int64)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 \
                    or labels.shape != (len(data),) or labels.min() < 0 or labels.max() > 9:
                raise ValueError(f"unexpected contents: data {data.dtype} {data.shape}, "
                                 f"labels {labels.shape}")
        except Exception as err:  # noqa: BLE001 -- truncated or garbage pickles fail in many ways
            raise CorruptCacheError(path, f"{type(err).__name__}: {err}") from err
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(labels)
    x_train, y_train = np.ascontiguousarray(np.concatenate(xs[:5])), np.concatenate(ys[:5])
    x_test, y_test = np.ascontiguousarray(xs[5]), ys[5]
    return x_train, y_train, x_test, y_test, CIFAR10_CLASS_NAMES


# --- an image folder or a .tar.gz of one ---------------------------------------------------------


def load_image_folder(path, image_size: int = 32, cache: bool = True):
    """Images from ``train/<class>/*.jpg|jpeg|png`` (and optionally ``test/<class>/...``).

    ``path`` is the folder that holds ``train/``, or a ``.tar.gz`` / ``.tgz`` / ``.tar`` of it,
    read directly without extracting. One extra leading folder is allowed
    (``cifar10/train/cat/0001.jpg``). Class ids follow the sorted names of the class folders.
    Hidden files (``.DS_Store``, ``._*``) are skipped. Decoded arrays are cached in
    ``$BT_CACHE_DIR`` (default ``~/.cache/bt_helpers``), keyed by the files' names, sizes and
    modification times, so a second load takes about a second.

    Args:
        path: folder or archive, a ``str`` or ``Path``.
        image_size: the side every image must have, in pixels. Defaults to 32.
        cache: read and write the decoded-array cache. Defaults to True.

    Returns:
        ``(x_train, y_train, x_test, y_test, class_names)``: ``uint8`` images of shape
        ``(N, image_size, image_size, 3)``, ``int64`` labels ``(N,)`` (sorted by class, then
        file name), ``x_test``/``y_test`` None without ``test/``, and the class names.

    Raises:
        DataError: the path is missing, the layout is wrong, fewer than 2 classes, an empty
            class folder, or files that are not readable ``image_size`` x ``image_size`` RGB
            images (each named).
        CorruptCacheError: the cached arrays are damaged (the message names the file).
    """
    arrays, _ = _load_image_folder(path, image_size, cache)
    return arrays


_LAYOUT = "train/<class>/*.jpg|jpeg|png (optionally test/<class>/...)"


def _load_image_folder(path, image_size: int = 32, cache: bool = True):
    path = Path(os.path.expanduser(str(path)))
    if not path.exists():
        raise DataError(f"No such folder or file: {path}. Expected a folder laid out as "
                        f"{_LAYOUT}, or a .tar.gz of one.")
    if path.is_dir():
        tree = _scan_folder(path)
        key = [(rel, size, mtime) for rel, (_, size, mtime) in sorted(tree.files.items())]
        n_bytes = sum(size for _, size, _ in key)
    elif _is_archive(path):
        tree = None
        stat = path.stat()
        key = [str(path.resolve()), stat.st_size, stat.st_mtime_ns]
        n_bytes = stat.st_size
    else:
        raise DataError(f"{path} is a file but not a .tar.gz, .tgz or .tar archive. Expected a "
                        f"folder laid out as {_LAYOUT}, or a .tar.gz of one.")
    cache_file = _cache_file(path, key, n_bytes, image_size) if cache else None
    if cache_file is not None and cache_file.exists():
        return _read_cache(cache_file), f"{path} (decoded cache {cache_file})"
    if tree is None:
        tree = _scan_archive(path)
    arrays = _decode_tree(tree, path, image_size)
    if cache_file is not None:
        _write_cache(cache_file, arrays)
    return arrays, str(path)


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith((".tar.gz", ".tgz", ".tar"))


class _Tree:
    """Directories and files (relative path tuples) under the dataset root, and how to read them."""

    def __init__(self):
        self.dirs = set()    # {("train", "cat"), ...}, relative to the archive / folder
        self.files = {}      # {("train", "cat", "0001.jpg"): (reader, size, mtime)}
        self.top = []        # names directly under the given path (for error messages)


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name in _JUNK_FILES


def _scan_folder(path: Path) -> _Tree:
    tree = _Tree()
    tree.top = sorted(p.name for p in path.iterdir() if not _is_junk(p.name))
    roots = [()] if (path / "train").is_dir() else \
        [(name,) for name in tree.top if (path / name / "train").is_dir()]
    for root in roots:
        for split in ("train", "test"):
            split_dir = path.joinpath(*root, split)
            if not split_dir.is_dir():
                continue
            tree.dirs.add(root + (split,))
            for entry in os.scandir(split_dir):
                if _is_junk(entry.name):
                    continue
                if entry.is_dir():
                    tree.dirs.add(root + (split, entry.name))
                    for item in os.scandir(entry.path):
                        if item.is_file() and not _is_junk(item.name):
                            st = item.stat()
                            tree.files[root + (split, entry.name, item.name)] = (
                                Path(item.path), st.st_size, st.st_mtime_ns)
                elif entry.is_file():
                    st = entry.stat()
                    tree.files[root + (split, entry.name)] = (Path(entry.path), st.st_size,
                                                              st.st_mtime_ns)
    return tree


def _scan_archive(path: Path) -> _Tree:
    tree = _Tree()
    top = set()
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                parts = tuple(p for p in member.name.split("/") if p not in ("", "."))
                if not parts or any(_is_junk(p) for p in parts):
                    continue
                top.add(parts[0])
                if member.isdir():
                    tree.dirs.add(parts)
                    continue
                if not member.isfile():
                    continue
                tree.dirs.update(parts[:i] for i in range(1, len(parts)))
                if len(parts) <= 4 and any(p in ("train", "test") for p in parts[:2]):
                    data = tar.extractfile(member).read()
                    tree.files[parts] = (data, member.size, member.mtime)
    except (tarfile.TarError, OSError, EOFError, ValueError) as err:
        raise DataError(f"Cannot read the archive {path} ({type(err).__name__}: {err}). Expected "
                        f"a .tar.gz of a folder laid out as {_LAYOUT}.") from err
    tree.top = sorted(top)
    return tree


def _find_root(tree: _Tree, path: Path) -> tuple:
    if ("train",) in tree.dirs:
        return ()
    roots = sorted(d[:1] for d in tree.dirs if len(d) == 2 and d[1] == "train")
    if len(roots) == 1:
        return roots[0]
    if len(roots) > 1:
        found = ", ".join(r[0] + "/train" for r in roots)
        raise DataError(f"{path} holds several datasets ({found}). "
                        f"Point at one of them: a folder laid out as {_LAYOUT}.")
    found = ", ".join(tree.top[:8]) + (", ..." if len(tree.top) > 8 else "") or "nothing"
    hint = " It looks like the train/ folder itself; pass the folder that contains it." \
        if path.name == "train" else ""
    raise DataError(f"{path} has no train/ folder (found: {found}). Expected {_LAYOUT}.{hint}")


def _split_classes(tree: _Tree, root: tuple, split: str, path: Path):
    """``{class: [relative file path tuples]}`` for one split, checking the layout."""
    where = "/".join(root + (split,))
    prefix = root + (split,)
    classes = {d[-1]: [] for d in tree.dirs if len(d) == len(prefix) + 1 and d[:-1] == prefix}
    loose = []
    for rel in tree.files:
        if rel[:-1] == prefix:
            loose.append(rel[-1])
        elif len(rel) == len(prefix) + 2 and rel[:len(prefix)] == prefix:
            classes.setdefault(rel[-2], []).append(rel)
    if not classes:
        found = f"{len(loose)} files directly in it, e.g. {loose[0]}" if loose else "it is empty"
        raise DataError(f"{path}: {where}/ has no class folders ({found}). Expected "
                        f"{where}/<class>/*.jpg|jpeg|png, one folder per class.")
    empty = sorted(c for c, files in classes.items() if not files)
    if empty:
        raise DataError(f"{path}: the class folder{'s' if len(empty) > 1 else ''} "
                        f"{', '.join(f'{where}/{c}/' for c in empty)} "
                        f"{'are' if len(empty) > 1 else 'is'} empty. Expected .jpg, .jpeg or "
                        f".png images in every class folder; remove the empty ones.")
    return {c: sorted(files) for c, files in classes.items()}


def _decode_tree(tree: _Tree, path: Path, image_size: int):
    root = _find_root(tree, path)
    train = _split_classes(tree, root, "train", path)
    class_names = tuple(sorted(train))
    if len(class_names) < 2:
        raise DataError(f"{path}: train/ has only one class folder ({class_names[0]}/). Expected "
                        f"at least 2 classes, one folder each: {_LAYOUT}.")
    splits = {"train": train}
    if root + ("test",) in tree.dirs:
        test = _split_classes(tree, root, "test", path)
        unknown = sorted(set(test) - set(class_names))
        if unknown:
            raise DataError(f"{path}: test/ has class folders that train/ lacks: "
                            f"{', '.join(unknown)}. Expected the same class names in both.")
        splits["test"] = test

    from PIL import Image

    problems, arrays = [], []
    for split, classes in splits.items():
        files = [(class_names.index(c), rel) for c in class_names for rel in classes.get(c, [])]
        x = np.empty((len(files), image_size, image_size, 3), np.uint8)
        for i, (_, rel) in enumerate(files):
            if rel[-1].lower().endswith(IMAGE_EXTENSIONS):
                problem = _decode_into(x, i, tree.files[rel][0], image_size, Image)
            else:
                problem = "is not an image file (expected .jpg, .jpeg or .png)"
            if problem:
                problems.append(f"{'/'.join(rel)} {problem}")
        arrays += [x, np.array([c for c, _ in files], np.int64)]
    if problems:
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        shown = "; ".join(problems[:5]) + more
        raise DataError(f"{path}: {len(problems)} file{'s' if len(problems) > 1 else ''} cannot be "
                        f"used: {shown}. Expected {image_size}x{image_size} RGB colour images "
                        f"(.jpg, .jpeg or .png).")
    if len(arrays) == 2:
        arrays += [None, None]
    return (*arrays, class_names)


def _decode_into(x: np.ndarray, i: int, reader, image_size: int, Image) -> Optional[str]:
    """Decode one image (a ``Path`` or its bytes) into ``x[i]``; the problem, or None."""
    try:
        data = reader.read_bytes() if isinstance(reader, Path) else reader
        with Image.open(io.BytesIO(data)) as im:
            if im.size != (image_size, image_size):
                return f"is {im.size[0]}x{im.size[1]} pixels, not {image_size}x{image_size}"
            mode = im.mode
            if mode in ("L", "LA", "1", "I", "I;16", "F"):
                return f"is grayscale (mode {mode}), not RGB"
            if mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
                return f"has an alpha channel (mode {mode}), not plain RGB"
            if mode not in ("RGB", "P"):
                return f"is in colour mode {mode}, not RGB"
            x[i] = np.asarray(im if mode == "RGB" else im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        return f"cannot be read as an image ({type(err).__name__}: {err})"
    return None


def _cache_dir() -> Path:
    configured = os.environ.get(CACHE_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path(os.path.expanduser("~")) / ".cache" / "bt_helpers"


def _cache_file(path: Path, key, n_bytes: int, image_size: int) -> Path:
    """``<cache dir>/<name>-<bytes>-<hash of the file list, sizes and times>.npz``."""
    stem = re.sub(r"(\.tar\.gz|\.tgz|\.tar)$", "", path.name, flags=re.IGNORECASE)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "images"
    digest = hashlib.sha256(repr((_CACHE_FORMAT, image_size, key)).encode()).hexdigest()[:12]
    return _cache_dir() / f"{stem}-{n_bytes}-{digest}.npz"


def _read_cache(cache_file: Path):
    try:
        with np.load(cache_file, allow_pickle=False) as f:
            names = tuple(str(n) for n in f["class_names"])
            x_train, y_train = f["x_train"], f["y_train"]
            x_test, y_test = (f["x_test"], f["y_test"]) if "x_test" in f.files else (None, None)
        if x_train.dtype != np.uint8 or x_train.ndim != 4 or y_train.shape != (len(x_train),):
            raise ValueError(f"unexpected arrays: x_train {x_train.dtype} {x_train.shape}, "
                             f"y_train {y_train.shape}")
    except Exception as err:  # noqa: BLE001 -- a damaged zip fails in many ways
        raise CorruptCacheError(cache_file, f"{type(err).__name__}: {err}") from err
    return x_train, y_train.astype(np.int64), x_test, y_test, names


def _write_cache(cache_file: Path, arrays) -> None:
    x_train, y_train, x_test, y_test, names = arrays
    payload = dict(x_train=x_train, y_train=y_train, class_names=np.array(names))
    if x_test is not None:
        payload.update(x_test=x_test, y_test=y_test)
    tmp_name = None
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=cache_file.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, cache_file)  # atomic: a reader never sees half a file
    except OSError as err:
        if tmp_name and os.path.exists(tmp_name):
            os.remove(tmp_name)
        warnings.warn(f"Could not cache the decoded images at {cache_file} ({err}); the next "
                      f"load decodes them again. Set {CACHE_DIR_ENV} to a writable folder.",
                      stacklevel=3)


# --- one entry point for every source ------------------------------------------------------------


def load_data(source: Optional[str] = None, data_dir=None, n_train: Optional[int] = None,
              n_val: Optional[int] = None, seed: int = 0, preset=None) -> ImageData:
    """Load images, hold out a stratified validation split, and say where they came from.

    Args:
        source: ``"auto"``, ``"cifar10"``, ``"folder"`` or ``"synthetic"`` (see the module
            docstring). Defaults to ``preset.data_source``, else ``"auto"``.
        data_dir: image folder or ``.tar.gz`` for ``"folder"`` and ``"auto"``. Defaults to
            the ``BT_DATA_DIR`` environment variable.
        n_train: training images kept (a stratified subsample of what remains after the
            validation split); None keeps them all. Defaults to ``preset.n_train``, else None.
        n_val: validation images held out of the training images, stratified and seeded.
            Defaults to ``preset.n_val``, else 5000.
        seed: seed of the split, the subsample and the synthetic generator. Defaults to 0.
        preset: a ``bt_helpers.config.Preset`` whose ``data_source``, ``n_train`` and
            ``n_val`` become the defaults. Defaults to None.

    Returns:
        An :class:`ImageData`. For ``"synthetic"``, ``(n_train or 5000) + n_val`` training
        and 1000 test images are generated.

    Raises:
        ValueError: an unknown ``source`` (the message lists the valid ones) or bad sizes.
        DataError: the requested source cannot be loaded (``"auto"`` falls back instead).
    """
    if preset is not None:
        source = preset.data_source if source is None else source
        n_train = preset.n_train if n_train is None else n_train
        n_val = preset.n_val if n_val is None else n_val
    source = "auto" if source is None else source
    n_val = 5000 if n_val is None else n_val
    if source not in SOURCES:
        raise ValueError(f"Unknown data source {source!r}. Valid sources: {', '.join(SOURCES)}.")
    if n_train is not None and (int(n_train) != n_train or n_train < 1):
        raise ValueError(f"n_train must be None or an integer >= 1. Received: n_train={n_train!r}")
    if int(n_val) != n_val or n_val < 0:
        raise ValueError(f"n_val must be an integer >= 0. Received: n_val={n_val!r}")
    if data_dir is not None and source in ("cifar10", "synthetic"):
        raise ValueError(f"data_dir is read by source='folder' or 'auto', not source={source!r}. "
                         f"Received: data_dir={str(data_dir)!r}")
    from_env = data_dir is None and bool(os.environ.get(DATA_DIR_ENV, "").strip())
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV, "").strip() or None

    if source == "synthetic":
        arrays = make_synthetic((n_train or SYNTHETIC_N_TRAIN) + n_val, SYNTHETIC_N_TEST, seed)
        origin = f"bt_helpers.data.make_synthetic(seed={seed})"
    elif source == "cifar10":
        try:
            arrays, origin = _cifar10_from_keras_cache(None)
        except CorruptCacheError:
            raise
        except DataError:
            arrays, origin = _download_cifar10(None)
    elif source == "folder":
        if data_dir is None:
            raise DataError(f"source='folder' needs data_dir or the {DATA_DIR_ENV} environment "
                            f"variable: a folder laid out as {_LAYOUT}, or a .tar.gz of one.")
        arrays, origin = _load_image_folder(data_dir)
    else:
        source, arrays, origin = _load_auto(data_dir, from_env, n_train, n_val, seed)
    return _split(arrays, source, origin, n_train, n_val, seed)


def _load_auto(data_dir, from_env: bool, n_train, n_val, seed):
    """``(source, arrays, origin)``: the first of folder, Keras cache, download that works."""
    failures = []
    if data_dir is None:
        failures.append(f"image folder: no data_dir given and {DATA_DIR_ENV} is not set")
    else:
        label = f"{DATA_DIR_ENV}={data_dir}" if from_env else f"data_dir={data_dir}"
        try:
            arrays, origin = _load_image_folder(data_dir)
            return "folder", arrays, origin
        except DataError as err:
            failures.append(f"image folder {label}: {err}")
    attempts = (("Keras cache", lambda: _cifar10_from_keras_cache(None)),
                ("download", lambda: _download_cifar10(None)))
    for what, attempt in attempts:
        try:
            arrays, origin = attempt()
        except DataError as err:
            failures.append(f"{what}: {err}")
            continue
        if failures[0].startswith("image folder "):  # a data_dir was given and failed: say so
            _shout("CIFAR-10 found, but not where you pointed",
                   [failures[0], f"using {origin} instead."])
        return "cifar10", arrays, origin
    n_images = (n_train or SYNTHETIC_N_TRAIN) + n_val
    _shout("CIFAR-10 NOT FOUND: USING SYNTHETIC SHAPES AND TEXTURES INSTEAD", [
        *(f"{i}. {f}" for i, f in enumerate(failures, 1)),
        f"Generating {n_images:,} training images (source='synthetic'): results are not "
        f"CIFAR-10 results.",
        f"To use CIFAR-10 offline, point {DATA_DIR_ENV} at a folder or .tar.gz laid out as "
        f"{_LAYOUT}, before loading:",
        f"  export {DATA_DIR_ENV}=/path/to/cifar10-train-jpeg.tar.gz      (shell), or",
        f"  os.environ['{DATA_DIR_ENV}'] = '/path/to/cifar10-train-jpeg.tar.gz'   (notebook),",
        f"or copy cifar-10-python.tar.gz (from {CIFAR10_URL}) into "
        f"{_keras_datasets_dirs(None)[0]}/.",
    ])
    arrays = make_synthetic(n_images, SYNTHETIC_N_TEST, seed)
    return "synthetic", arrays, f"bt_helpers.data.make_synthetic(seed={seed}), CIFAR-10 not found"


def _shout(title: str, lines) -> None:
    """A warning that shows in a terminal, a log and a notebook: printed and warned."""
    bar = "!" * 100
    text = "\n".join([bar, f"!!! {title}", *(f"!!! {line}" for line in lines), bar])
    print(text, flush=True)
    warnings.warn(f"{title}\n" + "\n".join(lines), UserWarning, stacklevel=4)


def _split(arrays, source: str, origin: str, n_train, n_val: int, seed: int) -> ImageData:
    x, y, x_test, y_test, class_names = arrays
    if n_val >= len(x):
        raise ValueError(f"n_val={n_val} leaves no training images: the source has {len(x):,}. "
                         f"Choose n_val < {len(x):,}.")
    train_idx, val_idx = _stratified_indices(y, n_val, np.random.default_rng(seed))
    if n_train is not None:
        if n_train > len(train_idx):
            raise ValueError(f"n_train={n_train:,} but only {len(train_idx):,} training images "
                             f"remain after holding out n_val={n_val:,}. Choose n_train <= "
                             f"{len(train_idx):,} or None for all.")
        _, keep = _stratified_indices(y[train_idx], n_train, np.random.default_rng(seed + 1))
        train_idx = train_idx[keep]
    return ImageData(x_train=x[train_idx], y_train=y[train_idx], x_val=x[val_idx],
                     y_val=y[val_idx], x_test=x_test, y_test=y_test, class_names=class_names,
                     source=source, origin=origin)


# --- the first cell of every notebook ------------------------------------------------------------


def start(preset_name: Optional[str] = None, seed: int = 0):
    """Pick the preset, seed everything, load its data, and print what this run uses.

    Prints the preset's ``describe()``, the data's ``describe()``, the date, the TensorFlow
    and Keras versions and the device (GPU name, or CPU and its cores).

    Args:
        preset_name: ``"ci"``, ``"teaching"`` or ``"full"``. Defaults to ``BT_PRESET``, else
            ``full`` with a GPU and ``teaching`` without (see ``bt_helpers.config``).
        seed: seed for Python, NumPy, TensorFlow (``keras.utils.set_random_seed``) and the
            data split. Defaults to 0.

    Returns:
        ``(preset, images)``: a ``bt_helpers.config.Preset`` and an :class:`ImageData`.
    """
    from bt_helpers.config import get_preset

    preset = get_preset(preset_name)
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    print(preset.describe())
    images = load_data(preset=preset, seed=seed)
    print(images.describe())
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    print(f"run: {now} · TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"Python {sys.version.split()[0]} · device: {_device_name(tf)}")
    return preset, images


def _device_name(tf) -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for gpu in gpus:
            try:
                names.append(tf.config.experimental.get_device_details(gpu).get("device_name",
                                                                                gpu.name))
            except Exception:  # noqa: BLE001 -- details are best effort
                names.append(gpu.name)
        return ", ".join(names)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return f"CPU, {cores} core{'s' if cores != 1 else ''}"
