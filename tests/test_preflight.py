"""Pre-flight: every checkable input is checked before the first job, naming file and row."""

from __future__ import annotations

import json

import pytest
import yaml

from alpacare.config import validate
from alpacare.io import read_records
from alpacare.preflight import PreflightError, check, check_keys, job_endpoints
from conftest import copy_project


@pytest.fixture
def project(tmp_path):
    return copy_project(tmp_path)


@pytest.fixture
def config(project):
    return validate(yaml.safe_load((project / "config.yaml").read_text()))


@pytest.fixture(autouse=True)
def no_keys(monkeypatch):
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MY_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_the_default_config_passes(project, config):
    check(config, root=project)


@pytest.mark.parametrize("content, expected", [
    (b"{not json", "seeds/bad.json: not valid JSON"),
    (b"", "seeds/bad.json: the file is empty"),
    (b"[]", "seeds/bad.json: the list of seed tasks is empty"),
    (b'["\xff\xfe"]', "seeds/bad.json: not UTF-8"),
])
def test_bad_seed_files_are_named(project, config, content, expected):
    (project / "seeds/bad.json").write_bytes(content)
    config["seeds"] = ["seeds/bad.json", "alpacare-official"]  # a name, not a file: a job downloads it
    with pytest.raises(PreflightError) as info:
        check(config, root=project)
    assert expected in str(info.value) and str(project) not in str(info.value)


@pytest.mark.parametrize("content, expected", [
    (b'{"instruction": "a"}\n{"input": ""}\n', "testsets.t: testsets/t.jsonl: row 1: no instruction"),
    (b'{"instruction": "a"}\n{"instruction": "caf\xe9"}\n', "testsets/t.jsonl: line 2, column 21: not UTF-8 text (byte 0xe9)"),
    (b'{"instruction": "a"}\n{"instruction": \n', "testsets/t.jsonl: line 2: not valid JSON"),
    (b'[{"instruction": "a"},\n 3]', "testsets/t.jsonl: row 1: expected a JSON object"),
])
def test_bad_test_sets_are_named_with_their_row(project, config, content, expected):
    (project / "testsets/t.jsonl").write_bytes(content)
    config["testsets"]["t"] = {"path": "testsets/t.jsonl"}
    with pytest.raises(PreflightError) as info:
        check(config, root=project)
    assert expected in str(info.value)


def test_read_records_names_file_and_line_for_bad_encoding(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes('{"a": 1}\n{"a": "ok"}\n{"a": "\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"rows.jsonl: line 3, column 8: not UTF-8"):
        read_records(path)


def api_config(config, **spec):
    config["llms"]["gpt"] = {"provider": "openai", "model": "gpt-x", **spec}
    config["generators"]["gpt-ref"] = {"llm": "gpt"}
    config["evaluation"]["references"] = ["gpt-ref"]
    return config


def test_missing_key_of_a_planned_endpoint_is_named(project, config):
    with pytest.raises(PreflightError, match=r"'llms.gpt' needs an API key in the environment variable OPENAI_API_KEY "
                                             r"\(planned jobs call it: generate gpt-ref/medical-dozen"):
        check(api_config(config), root=project)


def test_keys_come_from_the_named_variable(project, config, monkeypatch):
    config = api_config(config, api_key_env="MY_KEY")
    with pytest.raises(PreflightError, match="MY_KEY"):
        check(config, root=project)
    monkeypatch.setenv("MY_KEY", "sk-fake")
    check(config, root=project)


def test_base_url_without_a_key_needs_keyless(project, config):
    config = api_config(config, base_url="http://127.0.0.1:9/v1")
    with pytest.raises(PreflightError, match="keyless: true"):
        check(config, root=project)
    config["llms"]["gpt"]["keyless"] = True
    check(config, root=project)


def test_no_key_is_needed_in_replay_only_mode_or_for_finished_jobs(project, config):
    config = api_config(config)
    config["llm"]["replay_only"] = True
    check(config, root=project)
    config["llm"]["replay_only"] = False
    (project / "results/outputs/gpt-ref").mkdir(parents=True)
    (project / "results/outputs/gpt-ref/medical-dozen.json").write_text("[]")
    check(config, root=project)  # its only job is done
    # Snakemake's plan decides when given: a planned judge job of an API judge needs its key
    config["judges"]["gpt-judge"] = {"llm": "gpt"}
    assert job_endpoints(config, [("judge", {"judge": "gpt-judge", "model": "m"}), ("testset", {"testset": "x"})]) \
        == {"gpt": ["judge gpt-judge/m"]}
    with pytest.raises(PreflightError, match="judge gpt-judge"):
        check_keys(config, jobs=[("judge", {"judge": "gpt-judge"})])
    check_keys(config, jobs=[("testset", {"testset": "x"})])


def test_budget_needs_a_price_on_every_api_endpoint(project, config, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    config = api_config(config)
    config["llm"]["budget_usd"] = 10
    with pytest.raises(PreflightError, match="'llms.gpt' has no price"):
        check(config, root=project)
    config["llms"]["gpt"]["price"] = {"input": 1, "output": 2}
    check(config, root=project)


@pytest.mark.workflow
def test_bad_inputs_stop_snakemake_before_any_job(project):
    from test_workflow import snakemake

    (project / "testsets/t.jsonl").write_text(json.dumps({"instruction": "fine"}) + "\n" + json.dumps({"id": 7}) + "\n")
    config = yaml.safe_load((project / "config.yaml").read_text())
    config["testsets"]["t"] = {"path": "testsets/t.jsonl"}
    (project / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(project, "--cores", "1", "--configfile", "bad.yaml", check=False)
    assert result.returncode != 0
    assert "testsets.t: testsets/t.jsonl: row 1: no instruction" in result.stdout + result.stderr
    assert not (project / "results").exists()
    # a missing key, too, stops the run before its first job
    config = yaml.safe_load((project / "config.yaml").read_text())
    config["llms"]["gpt"] = {"provider": "anthropic", "model": "claude-x"}
    config["generators"]["claude"] = {"llm": "gpt"}
    (project / "key.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(project, "results/outputs/claude/medical-dozen.json", "--cores", "1", "--configfile", "key.yaml",
                       check=False)
    assert result.returncode != 0 and "ANTHROPIC_API_KEY" in result.stdout + result.stderr
    assert not (project / "results").exists()
