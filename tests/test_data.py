"""Tests for bt_helpers.data: synthetic images, splits, image folders and tarballs, the
CIFAR-10 cache, the ``auto`` fallback, and every error a user can meet."""

import hashlib
import os
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from bt_helpers import data
from bt_helpers.config import get_preset
from bt_helpers.data import (CorruptCacheError, DataError, DownloadError, ImageData,
                             load_cifar10, load_data, load_image_folder, make_synthetic,
                             stratified_split)

# --- helpers -------------------------------------------------------------------------------------


def write_image(path, array, mode=None):
    """Save ``array`` (uint8) as PNG or JPEG according to the suffix of ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array, mode)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=95, subsampling=0)
    else:
        image.save(path)


def make_folder(root, classes=("zebra", "apple", "mango"), per_class=4, test_per_class=0, seed=0):
    """A folder ``root/train/<class>/*.png|jpg``; returns ``{(split, class, name): array}``."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in (("train", per_class), ("test", test_per_class)):
        for c in classes:
            for i in range(n):
                blocks = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)  # 8x8 flat blocks:
                array = np.kron(blocks, np.ones((8, 8, 1), np.uint8))       # JPEG keeps them
                name = f"{i:03d}.png" if i % 2 == 0 else f"{i:03d}.jpg"
                write_image(root / split / c / name, array)
                written[(split, c, name)] = array
    return written


def make_tarball(folder, archive, prefix=""):
    """``archive`` (.tar.gz) holding the contents of ``folder`` under ``prefix``."""
    with tarfile.open(archive, "w:gz") as tar:
        for name in sorted(os.listdir(folder)):
            tar.add(folder / name, arcname=os.path.join(prefix, name) if prefix else name)
    return archive


def assert_error(excinfo, *fragments):
    message = str(excinfo.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in error message: {message}"


# --- synthetic data ------------------------------------------------------------------------------


def test_make_synthetic_shapes_dtypes_and_balance():
    x, y, x_test, y_test, names = make_synthetic(n_train=203, n_test=50, seed=0)
    assert x.shape == (203, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (203,) and y.dtype == np.int64
    assert x_test.shape == (50, 32, 32, 3) and y_test.shape == (50,)
    assert names == data.SYNTHETIC_CLASS_NAMES and len(names) == 10
    counts = np.bincount(y, minlength=10)
    assert counts.max() - counts.min() <= 1
    assert x.min() < 30 and x.max() > 225  # uses the whole range, not a washed-out grey


def test_make_synthetic_is_deterministic_by_seed():
    a = make_synthetic(n_train=100, n_test=20, seed=3)
    b = make_synthetic(n_train=100, n_test=20, seed=3)
    c = make_synthetic(n_train=100, n_test=20, seed=4)
    for u, v in zip(a[:4], b[:4]):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    # the test images come from their own stream: asking for more does not change the training set
    d = make_synthetic(n_train=100, n_test=70, seed=3)
    np.testing.assert_array_equal(a[0], d[0])


def _random_conv_features(x, n_filters=64, size=5, pool=4, seed=0):
    """|random zero-mean 5x5 filters| pooled on a 4x4 grid: a generic, untrained feature map."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((size * size * 3, n_filters)).astype(np.float32)
    w -= w.mean(axis=0)
    side = x.shape[1] - size + 1
    out = []
    for start in range(0, len(x), 500):
        b = x[start:start + 500].astype(np.float32) / 255.0
        b -= b.mean(axis=(1, 2, 3), keepdims=True)
        p = np.lib.stride_tricks.sliding_window_view(b, (size, size), axis=(1, 2))
        p = p.transpose(0, 1, 2, 4, 5, 3).reshape(len(b), side, side, -1)
        r = np.abs(p @ w)  # (batch, side, side, n_filters)
        r = r.reshape(len(b), pool, side // pool, pool, side // pool, n_filters).mean(axis=(2, 4))
        out.append(r.reshape(len(b), -1))
    return np.concatenate(out)


def _ridge_accuracy(f_train, y_train, f_test, y_test, lam=1e-2):
    """Held-out accuracy of a one-vs-all ridge classifier (least squares on one-hot labels)."""
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-6
    a = np.hstack([(f_train - mu) / sd, np.ones((len(f_train), 1))])
    b = np.hstack([(f_test - mu) / sd, np.ones((len(f_test), 1))])
    w = np.linalg.solve(a.T @ a + lam * len(a) * np.eye(a.shape[1]), a.T @ np.eye(10)[y_train])
    return float(np.mean(np.argmax(b @ w, axis=1) == y_test))


def test_synthetic_is_learnable_from_shape_not_colour():
    x, y, x_test, y_test, _ = make_synthetic(n_train=2000, n_test=1000, seed=1)
    shape_acc = _ridge_accuracy(_random_conv_features(x), y, _random_conv_features(x_test), y_test)
    assert shape_acc > 0.5, shape_acc  # chance is 0.1; measured 0.72
    colour = lambda a: a.reshape(len(a), -1, 3).mean(axis=1)  # noqa: E731  (N, 3) mean colour
    colour_acc = _ridge_accuracy(colour(x), y, colour(x_test), y_test, lam=1e-3)
    assert colour_acc < 0.2, colour_acc  # measured 0.09: the mean colour does not give it away


# --- stratified split ----------------------------------------------------------------------------


def test_stratified_split_properties():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    rng.shuffle(y)
    x = np.arange(len(y))  # each example is its own index
    x_tr, y_tr, x_val, y_val = stratified_split(x, y, n_val=33, seed=1)
    assert len(x_val) == 33 and len(x_tr) == 100 - 33
    assert set(x_tr).isdisjoint(x_val) and set(x_tr) | set(x_val) == set(range(100))
    np.testing.assert_array_equal(y[x_tr], y_tr)
    np.testing.assert_array_equal(y[x_val], y_val)
    expected = np.bincount(y) * 33 / 100
    assert np.all(np.abs(np.bincount(y_val, minlength=4) - expected) < 1)
    again = stratified_split(x, y, n_val=33, seed=1)
    np.testing.assert_array_equal(again[2], x_val)
    assert not np.array_equal(stratified_split(x, y, n_val=33, seed=2)[2], x_val)


def test_stratified_split_edges_and_errors():
    x, y = np.arange(10), np.arange(10) % 2
    x_tr, _, x_val, _ = stratified_split(x, y, n_val=0, seed=0)
    assert len(x_val) == 0 and sorted(x_tr) == list(range(10))
    with pytest.raises(ValueError, match="n_val"):
        stratified_split(x, y, n_val=11, seed=0)
    with pytest.raises(ValueError, match="same length"):
        stratified_split(x, y[:5], n_val=2, seed=0)


# --- image folders and tarballs ------------------------------------------------------------------


def test_load_image_folder(isolated_data_env):
    root = isolated_data_env / "images"
    written = make_folder(root, per_class=4, test_per_class=2)
    x, y, x_test, y_test, names = load_image_folder(root)
    assert names == ("apple", "mango", "zebra")  # sorted folder names, not creation order
    assert x.shape == (12, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    assert x_test.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(y), [4, 4, 4])
    # images come sorted by class then file name; PNG pixels are exact, JPEG close
    order = sorted(k for k in written if k[0] == "train")
    order.sort(key=lambda k: (names.index(k[1]), k[2]))
    for i, key in enumerate(order):
        assert y[i] == names.index(key[1])
        if key[2].endswith(".png"):
            np.testing.assert_array_equal(x[i], written[key])
        else:
            assert np.abs(x[i].astype(int) - written[key]).mean() < 3


@pytest.mark.parametrize("prefix", ["", "cifar10"])
def test_load_tarball_matches_folder(isolated_data_env, prefix):
    root = isolated_data_env / "images"
    make_folder(root, per_class=3, test_per_class=1)
    archive = make_tarball(root, isolated_data_env / "images.tar.gz", prefix=prefix)
    from_folder = load_image_folder(root, cache=False)
    from_tar = load_image_folder(archive, cache=False)
    for a, b in zip(from_folder, from_tar):
        np.testing.assert_array_equal(a, b)


def test_load_data_folder_from_env(isolated_data_env, monkeypatch):
    root = isolated_data_env / "images"
    make_folder(root, classes=("a", "b"), per_class=6)
    monkeypatch.setenv("BT_DATA_DIR", str(root))
    images = load_data(source="folder", n_val=4, seed=0)
    assert images.source == "folder" and str(root) in images.origin
    assert len(images.x_train) == 8 and len(images.x_val) == 4 and images.x_test is None
    np.testing.assert_array_equal(images.class_counts("val"), [2, 2])
    assert "no test split" in images.describe()


def test_decoded_cache_round_trip_and_corruption(isolated_data_env, monkeypatch):
    root = isolated_data_env / "images"
    make_folder(root, classes=("a", "b"), per_class=3)
    archive = make_tarball(root, isolated_data_env / "set.tar.gz")
    first = load_image_folder(archive)
    cached = list((isolated_data_env / "cache").glob("set-*.npz"))
    assert len(cached) == 1
    monkeypatch.setattr(data, "_decode_tree", lambda *a: pytest.fail("decoded despite the cache"))
    second = load_image_folder(archive)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    cached[0].write_bytes(b"not a zip file")
    with pytest.raises(CorruptCacheError) as excinfo:
        load_image_folder(archive)
    assert_error(excinfo, str(cached[0]), "Delete")
    assert excinfo.value.path == str(cached[0])


def test_decoded_cache_follows_changes(isolated_data_env):
    root = isolated_data_env / "images"
    make_folder(root, classes=("a", "b"), per_class=3)
    assert len(load_image_folder(root)[0]) == 6
    write_image(root / "train" / "a" / "extra.png", np.zeros((32, 32, 3), np.uint8))
    assert len(load_image_folder(root)[0]) == 7
    assert len(list((isolated_data_env / "cache").glob("*.npz"))) == 2


# --- every error a user can meet -----------------------------------------------------------------


def test_missing_path(tmp_path):
    with pytest.raises(DataError) as excinfo:
        load_image_folder(tmp_path / "nowhere", cache=False)
    assert_error(excinfo, str(tmp_path / "nowhere"), "train/<class>/")


def test_file_that_is_not_an_archive(tmp_path):
    path = tmp_path / "images.zip"
    path.write_bytes(b"PK")
    with pytest.raises(DataError) as excinfo:
        load_image_folder(path, cache=False)
    assert_error(excinfo, str(path), ".tar.gz")


def test_corrupt_tarball(tmp_path):
    path = tmp_path / "images.tar.gz"
    path.write_bytes(os.urandom(2000))
    with pytest.raises(DataError) as excinfo:
        load_image_folder(path, cache=False)
    assert_error(excinfo, str(path), "Cannot read the archive")


def test_no_train_folder(tmp_path):
    make_folder(tmp_path / "x", classes=("a", "b"), per_class=1)
    (tmp_path / "x" / "train").rename(tmp_path / "x" / "training")
    with pytest.raises(DataError) as excinfo:
        load_image_folder(tmp_path / "x", cache=False)
    assert_error(excinfo, "has no train/ folder", "training", "train/<class>/")


def test_train_folder_passed_itself(tmp_path):
    make_folder(tmp_path, classes=("a", "b"), per_class=1)
    with pytest.raises(DataError) as excinfo:
        load_image_folder(tmp_path / "train", cache=False)
    assert_error(excinfo, "the train/ folder itself")


def test_several_datasets_in_one_folder(tmp_path):
    make_folder(tmp_path / "x" / "one", classes=("a", "b"), per_class=1)
    make_folder(tmp_path / "x" / "two", classes=("a", "b"), per_class=1)
    with pytest.raises(DataError) as excinfo:
        load_image_folder(tmp_path / "x", cache=False)
    assert_error(excinfo, "several datasets", "one/train", "two/train")


def test_hidden_files_are_skipped(tmp_path):
    root = tmp_path / "images"
    make_folder(root, classes=("a", "b"), per_class=2)
    (root / "train" / "a" / "._000.png").write_bytes(b"AppleDouble")
    (root / "train" / "b" / ".DS_Store").write_bytes(b"junk")
    (root / "README.txt").write_text("not part of the data")
    for path in (root, make_tarball(root, tmp_path / "images.tar.gz", prefix="top")):
        x, y, *_ = load_image_folder(path, cache=False)
        assert len(x) == 4


def test_images_without_class_folders(tmp_path):
    write_image(tmp_path / "train" / "0.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DataError) as excinfo:
        load_image_folder(tmp_path, cache=False)
    assert_error(excinfo, str(tmp_path), "no class folders", "0.png")


def test_fewer_than_two_classes(tmp_path):
    make_folder(tmp_path, classes=("only",), per_class=2)
    with pytest.raises(DataError) as excinfo:
        load_image_folder(tmp_path, cache=False)
    assert_error(excinfo, "only one class", "only/", "at least 2")


def test_empty_class_folder(tmp_path):
    make_folder(tmp_path, classes=("a", "b"), per_class=2)
    (tmp_path / "train" / "c").mkdir()
    (tmp_path / "train" / "c" / ".DS_Store").write_bytes(b"junk")  # hidden files do not count
    with pytest.raises(DataError) as excinfo:
        load_image_folder(tmp_path, cache=False)
    assert_error(excinfo, "train/c/", "empty")


def test_empty_class_folder_in_tarball(tmp_path):
    make_folder(tmp_path / "x", classes=("a", "b"), per_class=2)
    (tmp_path / "x" / "train" / "c").mkdir()
    archive = make_tarball(tmp_path / "x", tmp_path / "x.tar.gz")
    with pytest.raises(DataError) as excinfo:
        load_image_folder(archive, cache=False)
    assert_error(excinfo, str(archive), "train/c/", "empty")


def test_test_classes_must_exist_in_train(tmp_path):
    make_folder(tmp_path, classes=("a", "b"), per_class=2)
    write_image(tmp_path / "test" / "z" / "0.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DataError) as excinfo:
        load_image_folder(tmp_path, cache=False)
    assert_error(excinfo, "test/", "z")


@pytest.mark.parametrize("name, content, expected", [
    ("notes.txt", b"hello", "is not an image file"),
    ("broken.jpg", b"\xff\xd8 definitely not a jpeg", "cannot be read as an image"),
    ("big.png", np.zeros((64, 48, 3), np.uint8), "is 48x64 pixels, not 32x32"),
    ("grey.png", np.zeros((32, 32), np.uint8), "is grayscale (mode L)"),
    ("alpha.png", np.zeros((32, 32, 4), np.uint8), "has an alpha channel (mode RGBA)"),
])
@pytest.mark.parametrize("as_tarball", [False, True])
def test_bad_image_files_are_named(tmp_path, name, content, expected, as_tarball):
    root = tmp_path / "images"
    make_folder(root, classes=("a", "b"), per_class=2)
    bad = root / "train" / "b" / name
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        write_image(bad, content)
    path = make_tarball(root, tmp_path / "images.tar.gz") if as_tarball else root
    with pytest.raises(DataError) as excinfo:
        load_image_folder(path, cache=False)
    assert_error(excinfo, str(path), f"train/b/{name} {expected}", "Expected 32x32 RGB")


def test_palette_png_is_converted(tmp_path):
    make_folder(tmp_path, classes=("a", "b"), per_class=1)
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, :16] = (200, 10, 10)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.save(tmp_path / "train" / "b" / "palette.png")
    x, y, *_ = load_image_folder(tmp_path, cache=False)
    np.testing.assert_array_equal(x[-1], rgb)


# --- CIFAR-10 from the Keras cache ---------------------------------------------------------------


def fake_keras_cache(keras_home, per_batch=20, seed=0):
    """The extracted Keras 3 CIFAR-10 layout, with ``per_batch`` random images per batch."""
    folder = keras_home / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                 "data_batch_5", "test_batch"):
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in np.arange(per_batch) % 10],
                 b"batch_label": name.encode()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=4)
    return folder


def test_load_cifar10_from_keras_cache(tmp_path):
    folder = fake_keras_cache(tmp_path)
    x, y, x_test, y_test, names = load_cifar10(cache_dir=tmp_path, download=False)
    assert x.shape == (100, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    assert x_test.shape == (20, 32, 32, 3)
    assert names[0] == "airplane" and names[-1] == "truck"
    with open(folder / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")[b"data"][0]
    np.testing.assert_array_equal(x[0], raw.reshape(3, 32, 32).transpose(1, 2, 0))  # channels last


def test_corrupt_keras_batch_names_the_file(tmp_path):
    folder = fake_keras_cache(tmp_path)
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])  # a truncated file
    with pytest.raises(CorruptCacheError) as excinfo:
        load_cifar10(cache_dir=tmp_path, download=False)
    assert_error(excinfo, str(path), "Delete")


def test_incomplete_keras_folder_names_the_folder(tmp_path):
    folder = fake_keras_cache(tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(CorruptCacheError) as excinfo:
        load_cifar10(cache_dir=tmp_path, download=False)
    assert_error(excinfo, str(folder), "test_batch missing")


def test_corrupt_keras_archive_names_the_file(tmp_path):
    archive = tmp_path / "datasets" / "cifar-10-batches-py-target_archive"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"half a download")
    assert hashlib.sha256(archive.read_bytes()).hexdigest() != data._CIFAR10_SHA256
    with pytest.raises(CorruptCacheError) as excinfo:
        load_cifar10(cache_dir=tmp_path, download=False)
    assert_error(excinfo, str(archive), "SHA-256")


def test_no_cache_and_no_download(tmp_path):
    with pytest.raises(DataError, match="no CIFAR-10 in"):
        load_cifar10(cache_dir=tmp_path, download=False)


def test_download_fails_fast_without_network(tmp_path, no_network):
    with pytest.raises(DownloadError) as excinfo:
        load_cifar10(cache_dir=tmp_path)
    assert_error(excinfo, data.CIFAR10_URL, "network disabled")


# --- load_data -----------------------------------------------------------------------------------


def test_unknown_source_lists_the_valid_ones():
    with pytest.raises(ValueError) as excinfo:
        load_data(source="imagenet")
    assert_error(excinfo, "'imagenet'", "auto, cifar10, folder, synthetic")


def test_preset_gives_the_defaults():
    preset = get_preset("ci")
    images = load_data(preset=preset)
    assert images.source == "synthetic"
    assert (len(images.x_train), len(images.x_val)) == (preset.n_train, preset.n_val)
    assert len(load_data(preset=preset, n_val=100).x_val) == 100  # arguments win


def test_n_train_subsample_is_stratified_and_bounded():
    images = load_data(source="synthetic", n_train=100, n_val=50, seed=0)
    np.testing.assert_array_equal(images.class_counts("train"), [10] * 10)
    np.testing.assert_array_equal(images.class_counts("val"), [5] * 10)
    folder_like = (*make_synthetic(60, 10, seed=0),)
    with pytest.raises(ValueError, match="n_train=100"):
        data._split(folder_like, "synthetic", "test", 100, 10, 0)


def test_data_dir_is_refused_where_unused(tmp_path):
    with pytest.raises(ValueError, match="data_dir"):
        load_data(source="synthetic", data_dir=tmp_path)


def test_folder_source_needs_a_path(isolated_data_env):
    with pytest.raises(DataError, match="BT_DATA_DIR"):
        load_data(source="folder")


def test_auto_falls_back_to_synthetic_loudly(isolated_data_env, no_network, capsys):
    with pytest.warns(UserWarning, match="BT_DATA_DIR") as record:
        images = load_data(source="auto", n_train=50, n_val=20, seed=0)
    assert images.source == "synthetic" and "not CIFAR-10" in images.describe()
    message = str(record[0].message)
    for attempt in ("image folder", "Keras cache", "download", "network disabled"):
        assert attempt in message
    assert "CIFAR-10 NOT FOUND" in capsys.readouterr().out  # printed too, for notebooks


def test_auto_reports_a_broken_data_dir_and_uses_the_keras_cache(isolated_data_env, monkeypatch,
                                                                  capsys):
    fake_keras_cache(isolated_data_env / "keras")
    monkeypatch.setenv("BT_DATA_DIR", str(isolated_data_env / "typo"))
    with pytest.warns(UserWarning, match="typo"):
        images = load_data(source="auto", n_val=10)
    assert images.source == "cifar10" and len(images.x_train) == 90
    assert "BT_DATA_DIR=" in capsys.readouterr().out


def test_auto_prefers_the_folder(isolated_data_env, monkeypatch, recwarn):
    root = isolated_data_env / "images"
    make_folder(root, classes=("a", "b"), per_class=4)
    monkeypatch.setenv("BT_DATA_DIR", str(root))
    images = load_data(n_val=2)
    assert images.source == "folder" and not [w for w in recwarn if "CIFAR" in str(w.message)]


# --- ImageData -----------------------------------------------------------------------------------


def test_image_data_describe_and_summary(synthetic_images):
    images = synthetic_images
    assert images.num_classes == 10 and images.image_shape == (32, 32, 3)
    line = images.describe()
    assert "\n" not in line
    for fragment in ("SYNTHETIC", "make_synthetic(seed=0)", "512 train", "128 val", "1,000 test"):
        assert fragment in line
    table = images.summary().splitlines()
    assert table[0].split() == ["class", "train", "val", "test"]
    assert table[1].split()[0] == "disc" and table[-1].split() == ["total", "512", "128", "1,000"]
    assert repr(images).startswith("ImageData(data:")


def test_image_data_validates_its_arrays():
    x, y = np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="uint8"):
        ImageData(x.astype(np.float32), y, x, y, None, None, ("a", "b"), "synthetic", "t")
    with pytest.raises(ValueError, match="class ids"):
        ImageData(x, y + 5, x, y, None, None, ("a", "b"), "synthetic", "t")
    with pytest.raises(ValueError, match="source"):
        ImageData(x, y, x, y, None, None, ("a", "b"), "imagenet", "t")


def test_start_prints_preset_data_and_device(capsys):
    preset, images = data.start("ci", seed=0)
    out = capsys.readouterr().out
    assert preset.name == "ci" and images.source == "synthetic"
    assert preset.describe() in out and images.describe() in out
    assert "TensorFlow" in out and "Keras" in out and "device: " in out
