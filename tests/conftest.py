"""Fixtures shared by every test module.

* TensorFlow's C++ logging is quieted (``TF_CPP_MIN_LOG_LEVEL=2``) here, at import time,
  because the variable only works when set before TensorFlow is first imported; nothing in
  this file imports TensorFlow.
* ``synthetic_images``: one small read-only :class:`bt_helpers.data.ImageData` for the session.
* ``isolated_data_env``: no ``BT_DATA_DIR``, and every cache (``BT_CACHE_DIR``, ``KERAS_HOME``)
  in a fresh temporary folder, so a test never reads or writes the user's caches.
* ``no_network``: any attempt to resolve or connect a socket fails at once.
"""

import os
import socket

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def synthetic_images():
    """``ImageData`` of synthetic shapes (seed 0): 512 train, 128 val, 1000 test, 10 classes.

    Shared by the whole session and read-only (the arrays are not writeable): copy before
    changing anything.
    """
    from bt_helpers.data import load_data

    images = load_data(source="synthetic", n_train=512, n_val=128, seed=0)
    for array in (images.x_train, images.y_train, images.x_val, images.y_val,
                  images.x_test, images.y_test):
        array.setflags(write=False)
    return images


@pytest.fixture
def isolated_data_env(monkeypatch, tmp_path):
    """Unset ``BT_DATA_DIR``; point ``BT_CACHE_DIR`` and ``KERAS_HOME`` at empty temporary folders.

    Returns:
        The temporary folder (``tmp_path``); the caches are its ``cache/`` and ``keras/``.
    """
    import bt_helpers.data as data

    monkeypatch.delenv("BT_DATA_DIR", raising=False)
    monkeypatch.setenv("BT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    # Keras also uses /tmp/.keras when the home folder is read-only: look only in KERAS_HOME.
    real = data._keras_datasets_dirs
    monkeypatch.setattr(data, "_keras_datasets_dirs", lambda cache_dir: real(
        tmp_path / "keras" if cache_dir is None else cache_dir))
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    """Make every DNS lookup and socket connection fail immediately with ``OSError``."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the no_network test fixture")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
