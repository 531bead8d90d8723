"""Installed versions against pyproject.toml's ranges, checked before a job does any work."""

import json

import pytest

from alpacare.versions import VersionError, check_floors, declared
from tiny_llama import RECORDS


def installed_as(root, name: str, version: str):
    """A distribution's metadata directory, as pip leaves it, for `name` at `version`."""
    info = root / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_the_installed_training_stack_is_within_the_declared_ranges():
    found = check_floors(["torch", "transformers", "accelerate", "peft"])
    assert set(found) == {"torch", "transformers", "accelerate", "peft"}
    assert str(declared()["transformers"].specifier) == "<5.40,>=5.23"
    assert str(declared()["deepspeed"].specifier) == ">=0.16"  # optional groups count too


def test_a_package_below_its_floor_stops_the_finetune_stage_before_any_work(tmp_path, monkeypatch):
    """The GPU node of issue 23: transformers 5.17 and peft 0.17 (there, a TypeError on
    `activation_checkpointing` deep inside training)."""
    from alpacare.stages.finetune import finetune

    installed_as(tmp_path / "site", "transformers", "5.17.0")
    installed_as(tmp_path / "site", "peft", "0.17.1")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    data = tmp_path / "data.json"
    data.write_text(json.dumps(RECORDS))
    hp = {"method": "full", "epochs": 1, "lr": 1e-3, "batch_size": 4, "max_length": 64, "warmup_ratio": 0.0, "seed": 1}
    with pytest.raises(VersionError) as error:
        finetune([{"dataset": "tiny", "path": str(data)}], "no-backbone-needed", tmp_path / "model", hp, {}, devices=1)
    message = str(error.value)
    assert "transformers 5.17.0 is installed, alpacare needs <5.40,>=5.23" in message
    assert "peft 0.17.1 is installed, alpacare needs >=0.18" in message
    assert "pyproject.toml" in message and "pip install 'transformers<5.40,>=5.23' 'peft>=0.18'" in message
    assert "torch " not in message and "accelerate" not in message  # within their ranges
    assert not (tmp_path / "model.resume").exists()


def test_a_missing_package_is_named_and_the_installed_metadata_serves_without_the_checkout(tmp_path):
    with pytest.raises(VersionError, match=r"not_a_real_package_x is not installed \(alpacare needs not_a_real_pack"):
        check_floors(["not_a_real_package_x"])
    # no pyproject.toml (alpacare installed from a wheel): its metadata holds the same ranges
    assert check_floors(["transformers"], pyproject=tmp_path / "absent.toml") == check_floors(["transformers"])
    installed_as(tmp_path / "site", "accelerate", "1.6.0")
    import sys

    sys.path.insert(0, str(tmp_path / "site"))
    try:
        with pytest.raises(VersionError, match=r"accelerate 1\.6\.0 is installed, alpacare needs >=1\.7"):
            check_floors(["accelerate"], pyproject=tmp_path / "absent.toml")
    finally:
        sys.path.remove(str(tmp_path / "site"))
