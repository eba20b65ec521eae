"""Tests for the command line (bt_helpers.cli, ``python -m bt_helpers``)."""

import os
import subprocess
import sys

import pytest

from bt_helpers import cli


def run_module(*args, env=None):
    """``python -m bt_helpers *args`` in a fresh interpreter."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", "bt_helpers", *args], capture_output=True,
                          text=True, env=full_env, timeout=120)


def test_help_lists_the_subcommands():
    result = run_module("--help")
    assert result.returncode == 0, result.stderr
    assert "usage: python -m bt_helpers" in result.stdout
    for command in cli.available_commands():
        assert command in result.stdout
    assert "data" in cli.available_commands()


def test_data_prints_per_class_counts(capsys):
    assert cli.main(["data", "--source", "synthetic", "--n-train", "200", "--n-val", "100"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "SYNTHETIC" in out[0]
    assert out[1].split() == ["class", "train", "val", "test"]
    assert out[2].split() == ["disc", "20", "10", "100"]
    assert out[-1].split() == ["total", "200", "100", "1,000"]


def test_data_uses_the_preset(capsys):
    assert cli.main(["data", "--preset", "ci"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split() == ["total", "512", "256", "1,000"]


def test_data_dir_reads_a_folder(tmp_path, monkeypatch, capsys):
    import numpy as np
    from PIL import Image

    monkeypatch.setenv("BT_CACHE_DIR", str(tmp_path / "cache"))
    for i, name in enumerate(("cat", "cat", "cat", "dog", "dog", "dog")):
        (tmp_path / "images" / "train" / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(
            tmp_path / "images" / "train" / name / f"{i}.png")
    assert cli.main(["data", "--data-dir", str(tmp_path / "images"), "--n-val", "2"]) == 0
    out = capsys.readouterr().out
    assert "image folder" in out and "cat" in out and "dog" in out


def test_bad_data_dir_exits_2_with_one_line(tmp_path):
    missing = tmp_path / "no-such-folder"
    result = run_module("data", "--data-dir", str(missing))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(missing) in lines[0] and "train/<class>/" in lines[0]


def test_bad_sizes_exit_2(capsys):
    assert cli.main(["data", "--source", "synthetic", "--n-val", "-3"]) == 2
    assert capsys.readouterr().err.startswith("error: n_val must be")


def test_unknown_choice_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["data", "--source", "imagenet"])
    assert excinfo.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("entry, command", [(cli.train_main, "train"), (cli.eval_main, "eval")])
def test_console_scripts(entry, command, capsys):
    if command in cli.available_commands():  # once implemented, the script runs the command
        with pytest.raises(SystemExit) as excinfo:
            entry(["--help"])
        assert excinfo.value.code == 0
        assert f"python -m bt_helpers {command}" in capsys.readouterr().out
    else:
        assert entry([]) == 2
        assert f"'{command}' command is not part of bt_helpers yet" in capsys.readouterr().err
