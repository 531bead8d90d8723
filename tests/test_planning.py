"""alpacare.planning: what the rules read from the config, without Snakemake (the workflow's
dry runs check that the rules use it; tests/test_rebuilds.py that its results rerun the right jobs)."""

import pytest

from alpacare import planning
from alpacare.config import load
from conftest import ROOT


@pytest.fixture(scope="module")
def default():
    return load(ROOT / "config.yaml")


@pytest.fixture(scope="module")
def paper():
    return load(ROOT / "configs" / "paper.yaml")


def test_each_kind_of_generator_has_its_inputs_params_and_code(default):
    kind, inputs, params, code = planning.generator_plan(default, "alpacare-smollm2", "medical-dozen")
    assert (kind, inputs, params) == ("alpaca", {"model": "results/checkpoints/alpacare-smollm2"}, {"spec": {"provider": "local"}})
    assert "llm" in code and "stages.generate" in code
    assert planning.generator_plan(default, "smollm2-base", "medical-dozen")[1] == {"model": "results/models/smollm2-135m"}
    # an LLM: its backbone's directory (local) and the public part of its spec
    kind, inputs, params, _ = planning.generator_plan(default, "smollm2-chat", "medical-dozen")
    assert (kind, inputs, params) == ("chat", {"model": "results/models/smollm2-135m"},
                                      {"spec": {"provider": "local", "backbone": "smollm2-135m"}})


def test_imported_outputs_need_no_model_and_their_pin_is_a_param(paper):
    name, testset = next((g, t) for g, spec in paper["generators"].items() for t in spec.get("import", {}))
    kind, inputs, params, code = planning.generator_plan(paper, name, testset)
    assert kind == "import" and inputs == {} and "llm" not in code
    assert planning.import_pin(paper, name, testset)


def test_an_api_llm_needs_no_input_and_its_secrets_stay_out_of_params():
    config = {"llms": {"gpt": {"provider": "openai", "model": "gpt-4", "api_key_env": "KEY", "price": {"input": 1}}}}
    assert planning.llm_inputs(config, "gpt") == {}
    assert planning.public(config["llms"]["gpt"]) == {"provider": "openai", "model": "gpt-4"}


def test_judge_settings_hold_only_what_changes_a_verdict(default, paper):
    assert planning.judge_settings(default, "smollm2-logprob") == {"method": "logprob", "tie_margin": 0.0}
    project = {**paper, "protocol": "project"}
    assert planning.judge_settings(project, "gpt-3.5-turbo") == {"method": "reply", "max_tokens": 100, "reasks": 2}
    # paper.yaml's own protocol (AlpaCare's): its exact rule, nothing re-asked
    assert planning.judge_settings(paper, "gpt-3.5-turbo") == {"method": "reply", "max_tokens": 100, "reasks": 0,
                                                               "scoring": "alpacare"}
    assert planning.judge_prompt_file(default, "smollm2-logprob") == {"prompt": "prompts/judge/pairwise.yaml"}
    # AlpaCare's own prompt is downloaded by the job: no input file, its pins are params
    assert planning.judge_prompt_file(paper, "gpt-3.5-turbo") == {}
    assert planning.judge_official_pins(paper, "gpt-3.5-turbo")
    assert planning.judge_official_pins(default, "smollm2-logprob") == {}


def test_selfinstruct_prompts(default, paper):
    assert planning.selfinstruct_prompt(default["selfinstruct"]) == "prompts/selfinstruct/fields.txt"
    assert planning.selfinstruct_prompt({"prompting": "list"}) == "prompts/selfinstruct/list.txt"
    assert planning.selfinstruct_system({"prompting": "fields", "system_prompt": "s.txt"}) is None
    assert planning.selfinstruct_official_pins(default["selfinstruct"]) == {}
    assert set(planning.selfinstruct_official_pins(paper["selfinstruct"])) == {"prompt", "system"}
    assert planning.selfinstruct_files(prompt="alpacare-official", system=None, other="a.txt") == {"other": "a.txt"}


def test_figure_cells_and_the_outputs_they_compare():
    spec = {"judges": ["j"], "references": ["ref"], "testsets": ["t1", "t2"], "models": ["m1", "m2"]}
    cells = planning.figure_cells(spec)
    assert len(cells) == 4 and cells[0] == ("j", "ref", "t1", "m1")
    assert planning.cell_outputs(cells) == [("m1", "t1"), ("ref", "t1"), ("m2", "t1"), ("m1", "t2"), ("ref", "t2"), ("m2", "t2")]


def test_stats_targets_add_a_card_for_self_instructed_sets(default):
    assert planning.stats_targets(default) == ["results/stats/medinstruct/table.md", "results/stats/medinstruct/verbs.md",
                                               "results/data/medinstruct.card.md"]
    assert planning.stats_targets({"datasets": {"x": {"path": "x.json"}}, "stats": {"datasets": ["x"]}}) == [
        "results/stats/x/table.md", "results/stats/x/verbs.md"]


def test_usmle_inputs(default):
    usmle = default["usmle"]
    assert planning.usmle_source_files(usmle) == ["data/usmle/questions.jsonl"]
    assert planning.usmle_setting(usmle, "generation", "max_new_tokens") == 24
    assert planning.usmle_setting(usmle, "loglik", "prompt") == usmle["prompt"]
    assert planning.usmle_model(default, "smollm2-chat") == ({"model": "results/models/smollm2-135m"},
                                                              {"provider": "local", "backbone": "smollm2-135m"})
