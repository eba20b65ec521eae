"""Presets are frozen, validated, and chosen by argument, BT_PRESET or the hardware."""

import dataclasses

import pytest

from bt_helpers import config


def test_three_presets_with_their_names():
    assert sorted(config.PRESETS) == ["ci", "full", "teaching"]
    for name, preset in config.PRESETS.items():
        assert preset.name == name


def test_presets_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.get_preset("ci").epochs = 5


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown preset 'fast'.*ci, full, teaching"):
        config.get_preset("fast")


def test_env_var_selects_and_is_named_in_errors(monkeypatch):
    monkeypatch.setenv("BT_PRESET", "ci")
    assert config.get_preset().name == "ci"
    monkeypatch.setenv("BT_PRESET", "gpu")
    with pytest.raises(ValueError, match=r"\$BT_PRESET"):
        config.get_preset()


@pytest.mark.parametrize("gpu, expected", [(True, "full"), (False, "teaching")])
def test_default_follows_the_hardware(monkeypatch, gpu, expected):
    monkeypatch.delenv("BT_PRESET", raising=False)
    monkeypatch.setattr(config, "gpu_available", lambda: gpu)
    assert config.get_preset().name == expected


def test_overrides_are_validated_and_name_the_field():
    assert config.get_preset("ci", epochs=3).epochs == 3
    with pytest.raises(ValueError, match=r"`depth`.*Received: depth=50"):
        config.get_preset("ci", depth=50)
    with pytest.raises(ValueError, match=r"`batch_size`.*Received: batch_size=1"):
        config.get_preset("ci", batch_size=1)


def test_derived_values():
    full = config.get_preset("full")
    assert full.proj_dim == 8192
    assert full.learning_rate == pytest.approx(0.3 * 512 / 256)
    assert "ResNet-34" in full.describe() and "8192-8192-8192" in full.describe()
