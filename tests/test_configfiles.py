"""How configs combine, through real `snakemake -n` runs: a --configfile is the whole
configuration (config.yaml only when none is given, or when a config says `extends:`), and
values typed on the command line mean what they say."""

import json
import subprocess
import sys

import pytest
import yaml

from alpacare.config import ConfigError, load, resolve_extends, type_command_line
from conftest import ROOT, copy_project


def dry_run(project, *args):
    # snakemake prints its errors on stdout: read both as one
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", *args], cwd=project,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)


def planned(result) -> dict:
    """rule -> job count from snakemake's job table."""
    rows = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            rows[parts[0]] = int(parts[1])
    return rows


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("configs"))


def test_a_configfile_is_the_whole_configuration(project):
    released = dry_run(project, "--configfile", "configs/released.yaml")
    assert released.returncode == 0, released.stdout[-3000:]
    jobs = planned(released)
    # nothing of the default run leaks in: no self-instruct, fine-tuning, USMLE or statistics jobs
    assert not {"generate_tasks", "finetune", "usmle_questions", "stats", "backbone"} & set(jobs), jobs
    assert jobs["judge_api"] > 0 and jobs["report"] == 1


def test_without_a_configfile_the_default_run_is_planned(project):
    default = dry_run(project)
    assert default.returncode == 0, default.stdout[-3000:]
    assert {"generate_tasks", "finetune", "judge", "usmle_questions", "stats"} <= set(planned(default))


def test_a_config_extends_another_by_name(project):
    (project / "small.yaml").write_text(yaml.safe_dump({"extends": "config.yaml", "evaluation": {"testsets": []}}))
    small = dry_run(project, "--configfile", "small.yaml")
    assert small.returncode != 0 and "evaluation.testsets" in small.stdout   # merged over config.yaml, then checked
    (project / "nousmle.yaml").write_text("extends: config.yaml\nusmle: null\nstats: {datasets: []}\n")
    result = dry_run(project, "--configfile", "nousmle.yaml")
    assert result.returncode == 0, result.stdout[-3000:]
    jobs = planned(result)
    assert "generate_tasks" in jobs and "usmle_questions" not in jobs and "stats" not in jobs


@pytest.mark.parametrize("value", ["true", "True"])
def test_booleans_on_the_command_line_are_booleans(project, value):
    result = dry_run(project, "--configfile", "configs/released.yaml", "--config", f"llm={{replay_only: {value}}}")
    assert result.returncode == 0, result.stdout[-3000:]


def test_numbers_on_the_command_line_are_numbers(project):
    ok = dry_run(project, "--config", "llm={max_concurrency: 2, circuit_breaker: {failures: 3}}", "run_seed=7")
    assert ok.returncode == 0, ok.stdout[-3000:]
    bad = dry_run(project, "--config", "llm={max_concurrency: many}")
    assert bad.returncode != 0 and "llm.max_concurrency" in bad.stdout


def test_only_command_line_strings_are_read_as_yaml():
    config = {"llm": {"replay_only": "true", "max_concurrency": "4"}}
    type_command_line(config, {"llm": {"max_concurrency": "4"}})
    assert config == {"llm": {"replay_only": "true", "max_concurrency": 4}}   # the file's quoted "true" stays an error
    config = {"evaluation": {"judges": ["true"]}}   # a name that looks like a boolean stays a name
    type_command_line(config, {"evaluation": {"judges": ["true"]}})
    assert config["evaluation"]["judges"] == ["true"]


def test_extends_chains_and_cycles(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nrun_seed: 1\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="comes back"):
        load("a.yaml", tmp_path)
    (tmp_path / "b.yaml").write_text("llm: {max_retries: 2, max_concurrency: 3}\n")
    (tmp_path / "c.yaml").write_text("extends: a.yaml\nllm: {max_retries: 9}\n")
    merged = resolve_extends(yaml.safe_load((tmp_path / "c.yaml").read_text()), root=tmp_path)
    assert merged == {"run_seed": 1, "llm": {"max_retries": 9, "max_concurrency": 3}}
    with pytest.raises(ConfigError, match="no such config file"):
        load("d.yaml", tmp_path) if (tmp_path / "d.yaml").write_text("extends: missing.yaml\n") else None


def test_shipped_configs_stand_alone():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        load(path.relative_to(ROOT), ROOT)


def test_figures_add_their_cells_to_the_plan_once():
    from alpacare.config import compared_outputs, validate, verdict_cells

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["figures"] = {
        "figure2": {"judges": ["smollm2-logprob"], "references": ["smollm2-chat"], "testsets": ["medical-dozen"],
                    "models": ["smollm2-base", "smollm2-chat"]},
    }
    cells = verdict_cells(validate(config))
    # evaluation: 2 models; the figure adds smollm2-chat against itself and repeats smollm2-base
    assert cells == [("smollm2-logprob", "smollm2-chat", "medical-dozen", m)
                     for m in ("alpacare-smollm2", "smollm2-base", "smollm2-chat")]
    assert ("smollm2-chat", "medical-dozen") in compared_outputs(config)
    config["figures"]["figure2"]["models"].append("pmc-llama")
    with pytest.raises(ConfigError, match="'figures.figure2.models.2' names generator 'pmc-llama'"):
        validate(config)


def test_a_figure_is_judged_by_evaluations_judges_unless_it_names_its_own():
    from alpacare.config import validate

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["figures"] = {"figure2": {"references": ["smollm2-chat"], "testsets": ["medical-dozen"], "models": ["smollm2-base"]},
                         "own": {"judges": ["smollm2-logprob"], "references": ["smollm2-chat"], "testsets": ["medical-dozen"],
                                 "models": ["smollm2-base"]}}
    config["evaluation"]["judges"] = ["smollm2-logprob"]
    validated = validate(json.loads(json.dumps(config)))
    assert validated["figures"]["figure2"]["judges"] == ["smollm2-logprob"]
    assert validated["figures"]["figure2"]["published"] == "data/paper/alpacare_published.yaml"   # the default
    del config["evaluation"]
    with pytest.raises(ConfigError, match="'figures.figure2' names no judges and there is no evaluation.judges"):
        validate(json.loads(json.dumps(config)))
    config["figures"] = {"winrates": config["figures"]["own"]}
    with pytest.raises(ConfigError, match="'figures.winrates': the name is taken by a results table"):
        validate(json.loads(json.dumps(config)))
    config["figures"] = {"figure9": {**config["figures"]["winrates"], "paper_figure": "Figure 9"}}
    with pytest.raises(ConfigError, match=r"'figures.figure9.paper_figure': 'Figure 9' is not in data/paper/alpacare_published.yaml "
                                          r"\(known: Figure 2, Figure 3, Figure 4, Figure 6\)"):
        validate(json.loads(json.dumps(config)))
