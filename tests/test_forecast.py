"""The forecast: calls, tokens and cost of the planned LLM jobs, before paying for them."""

from __future__ import annotations

import json

import pytest
import yaml

from alpacare import selfinstruct
from alpacare.config import validate
from alpacare.forecast import Counter, Forecast, main
from alpacare.llm import Cache, Response, make_provider
from alpacare.llm.cache import cache_key
from alpacare.seeds import load_seeds
from conftest import copy_project

PRICE = {"input": 2.0, "output": 5.0}


@pytest.fixture
def project(tmp_path):
    project = copy_project(tmp_path)
    config = yaml.safe_load((project / "config.yaml").read_text())
    config["llms"]["gpt"] = {"provider": "openai", "model": "gpt-x", "price": PRICE}
    config["selfinstruct"].update(teacher="gpt", responder="gpt", prompting="list", requests=5)
    config["selfinstruct"]["sampling"]["max_tokens"] = 300
    config["generators"]["gpt-ref"] = {"llm": "gpt"}
    config["judges"]["gpt-judge"] = {"llm": "gpt", "method": "reply", "max_tokens": 16}
    config["evaluation"].update(references=["gpt-ref"], judges=["gpt-judge"])
    config["testsets"]["medical-dozen"]["limit"] = 4
    (project / "api.yaml").write_text(yaml.safe_dump(config))
    return project


def load(project):
    return validate(yaml.safe_load((project / "api.yaml").read_text()))


def teacher_requests(project, config):
    seeds = load_seeds([str(project / "seeds/medical_seed_tasks.json")])
    si = config["selfinstruct"]
    return [r for _, r in selfinstruct.build_requests(
        seeds, model="gpt-x", prompting="list", run_seed=config["run_seed"], requests=5,
        examples_per_request=si["examples_per_request"], tasks_per_request=si["tasks_per_request"],
        sampling=dict(si["sampling"]), template=selfinstruct.load_template(project / selfinstruct.DEFAULT_PROMPT["list"]),
        system=selfinstruct.read_prompt(project / si["system_prompt"]) if si.get("system_prompt") else None)]


def test_teacher_prompts_are_counted_exactly_and_priced(project):
    config = load(project)
    rows = {(r.stage, r.endpoint): r for r in Forecast(config, project, {}).run()}
    teacher = rows[("generate_tasks", "gpt")]
    counter = Counter("openai", "gpt-x")
    expected_in = sum(counter.request(r) for r in teacher_requests(project, config))
    assert (teacher.calls, teacher.cached, teacher.input_tokens, teacher.output_tokens_max) == (5, 0, expected_in, 5 * 300)
    assert teacher.cost_max_usd == pytest.approx((expected_in * 2.0 + 1500 * 5.0) / 1e6)
    # responses: every candidate task (5 requests x 12) bounded by the response max_tokens
    assert rows[("respond", "gpt")].calls == 60
    assert rows[("respond", "gpt")].output_tokens_max == 60 * config["selfinstruct"]["response_sampling"]["max_tokens"]
    # generation: one call per test-set row; judging: two orders per row, outputs bounded
    assert rows[("generate", "gpt")].calls == 4
    assert rows[("judge", "gpt")].calls == 2 * 4 * len(config["evaluation"]["models"])
    assert rows[("judge", "gpt")].output_tokens_max == 16 * rows[("judge", "gpt")].calls


def test_cached_calls_are_free_and_the_cache_history_gives_expected_outputs(project):
    config = load(project)
    provider = make_provider(config["llms"]["gpt"])
    cache = Cache(project / config["llm"]["cache"])
    for request in teacher_requests(project, config)[:2]:
        cache.put(cache_key(provider.name, provider.identity(), request.as_dict()), request.as_dict(),
                  Response(text="...", input_tokens=1, output_tokens=100))
    before = Forecast(validate(yaml.safe_load((project / "api.yaml").read_text())), project, {})
    teacher = {(r.stage, r.endpoint): r for r in before.run()}[("generate_tasks", "gpt")]
    assert (teacher.calls, teacher.cached) == (5, 2)
    assert teacher.output_tokens_max == 3 * 300 and teacher.output_tokens_expected == 3 * 100
    assert teacher.cost_expected_usd < teacher.cost_max_usd


def test_finished_jobs_cost_nothing_and_existing_outputs_are_judged_exactly(project):
    config = load(project)
    results = project / "results"
    (results / "selfinstruct").mkdir(parents=True)
    for name in ("tasks.raw.jsonl", "responses.jsonl"):
        (results / "selfinstruct" / name).write_text("")
    for generator in ["gpt-ref", *config["evaluation"]["models"]]:
        (results / "outputs" / generator).mkdir(parents=True)
        outputs = [{"id": i, "instruction": f"q{i}", "input": "", "output": "word " * 50} for i in range(4)]
        (results / "outputs" / generator / "medical-dozen.json").write_text(json.dumps(outputs))
    rows = Forecast(config, project, {}).run()
    assert [(r.stage, r.inputs) for r in rows] == [("judge", "exact")]


def test_cli_prints_the_table(project, capsys):
    assert main(["--configfile", "api.yaml", "--directory", str(project)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| stage | endpoint | model | jobs | calls |")
    assert "| generate_tasks | gpt | gpt-x | 1 | 5 | 0 |" in out and "| total |" in out


def with_published_testset(config: dict) -> dict:
    """The project's config judging on MedInstruct-test, a published file not downloaded yet."""
    config["testsets"]["medical-dozen"] = {"url": "alpacare:data/MedInstruct-test.jsonl", "match": "instruction"}
    return config


def test_a_published_test_set_is_fetched_from_its_pin_on_a_fresh_clone(project, mirror, monkeypatch):
    base, _ = mirror
    monkeypatch.setenv("ALPACARE_MIRROR", base)
    config = with_published_testset(load(project))
    forecast = Forecast(config, project, {})
    rows = {(r.stage, r.endpoint): r for r in forecast.run()}
    # all 216 rows, read in memory: nothing is left under results/ for Snakemake to mistake for the job's output
    assert rows[("generate", "gpt")].calls == 216 and rows[("generate", "gpt")].inputs == "exact"
    assert rows[("judge", "gpt")].calls == 2 * 216 * len(config["evaluation"]["models"])
    assert not (project / "results/testsets").exists() and not forecast.notes


def test_offline_a_published_test_set_counts_its_pinned_rows(project, tmp_path, monkeypatch):
    monkeypatch.setenv("ALPACARE_MIRROR", (tmp_path / "empty").as_uri())   # a mirror without the file: offline
    config = with_published_testset(load(project))
    forecast = Forecast(config, project, {})
    rows = {(r.stage, r.endpoint): r for r in forecast.run()}
    assert rows[("judge", "gpt")].calls == 2 * 216 * len(config["evaluation"]["models"])
    assert "pinned size" in rows[("judge", "gpt")].inputs and "pinned size" in rows[("generate", "gpt")].inputs
    assert any("its pinned size stands in (216 rows" in note for note in forecast.notes)


def test_the_paper_grid_prints_every_api_stage_and_the_gpu_hours_it_asks_slurm_for(capsys, monkeypatch, tmp_path):
    from alpacare import cluster
    from alpacare.config import load as load_config
    from conftest import ROOT

    monkeypatch.setenv("ALPACARE_MIRROR", (tmp_path / "empty").as_uri())   # a fresh clone, offline
    clone = copy_project(tmp_path)
    config = load_config(ROOT / "configs/paper.yaml", ROOT)
    forecast = Forecast(config, clone, {})
    stages = {(r.stage, r.endpoint): r for r in forecast.run()}
    assert set(stages) == {("generate_tasks", "gpt-4o"), ("respond", "gpt-4o-mini"), ("judge", "gpt-4o-mini"),
                           ("judge", "claude-haiku-4-5"), ("judge_validation", "gpt-4o-mini"),
                           ("judge_validation", "claude-haiku-4-5")}
    assert all(r.calls and r.cost_max_usd > 0 for r in stages.values())
    trained = {r.job: r for r in forecast.gpu_rows if r.stage == "finetune"}
    assert set(trained) == set(config["models"])
    for model, row in trained.items():
        asked = cluster.finetune_resources(config, model)
        assert (row.gpus, row.gpu_hours) == (asked["gpu"], round(asked["gpu"] * asked["runtime"] / 60, 2))
    generated = [r for r in forecast.gpu_rows if r.stage == "generate"]
    assert generated and all(r.gpus >= 1 for r in generated)
    assert main(["--configfile", "configs/paper.yaml", "--directory", str(clone)]) == 0
    out = capsys.readouterr().out
    assert "GPU time the planned cluster jobs ask SLURM for" in out and "| finetune | 9 |" in out
