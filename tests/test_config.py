import copy

import pytest
import yaml

from alpacare.config import ConfigError, load, validate
from conftest import ROOT


@pytest.fixture
def default():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def check_fails(config, *fragments):
    with pytest.raises(ConfigError) as err:
        validate(config, source="config.yaml")
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)
    return str(err.value)


def test_shipped_configs_validate():
    assert load(ROOT / "config.yaml")["llm"]["cache"] == ".cache/llm"
    paper = load(ROOT / "configs" / "paper.yaml")
    assert sorted(paper["figures"]) == ["figure10", "figure11", "figure2", "figure3", "figure4", "figure5", "figure6",
                                        "llama2_13b"]


def test_defaults_are_filled_in(default):
    del default["llm"]["max_retries"]
    default["models"]["alpacare-smollm2"].pop("warmup_ratio", None)
    config = validate(default)
    assert config["llm"]["max_retries"] == 5
    assert config["models"]["alpacare-smollm2"]["warmup_ratio"] == 0.03
    assert config["models"]["alpacare-smollm2"]["lora"]["target_modules"] == ["q_proj", "v_proj"]


def test_typo_in_a_key_is_named(default):
    default["selfinstruct"]["temprature"] = 0.5
    msg = check_fails(default, "selfinstruct.temprature", "config.yaml")
    assert "unknown key" in msg


def test_typo_in_a_nested_key_is_named(default):
    default["models"]["alpacare-smollm2"]["lora"] = {"rank": 8}
    check_fails(default, "models.alpacare-smollm2.lora.rank")


def test_wrong_type_is_named(default):
    default["selfinstruct"]["requests"] = "four"
    check_fails(default, "selfinstruct.requests", "not of type 'integer'")


def test_unknown_provider(default):
    default["llms"]["smollm2"]["provider"] = "gemini"
    check_fails(default, "llms.smollm2.provider", "gemini")


def test_undefined_generator_in_evaluation(default):
    default["evaluation"]["references"] = ["gpt-5"]
    check_fails(default, "evaluation.references.0", "gpt-5", "smollm2-chat")


def test_undefined_judge_in_evaluation(default):
    default["evaluation"]["judges"] = ["claude"]
    check_fails(default, "evaluation.judges.0", "claude")


def test_undefined_llm_in_judge(default):
    default["judges"]["smollm2-logprob"]["llm"] = "gpt-4"
    check_fails(default, "judges.smollm2-logprob.llm", "gpt-4")


def test_logprob_judge_needs_a_local_llm(default):
    default["llms"]["gpt-4"] = {"provider": "openai", "model": "gpt-4"}
    default["judges"]["smollm2-logprob"]["llm"] = "gpt-4"
    check_fails(default, "judges.smollm2-logprob", "logprob")


def test_generator_needs_exactly_one_source(default):
    default["generators"]["smollm2-base"] = {"backbone": "smollm2-135m", "model": "alpacare-smollm2"}
    check_fails(default, "generators.smollm2-base")


def test_import_only_generator_must_cover_every_testset(default):
    default["generators"]["official"] = {"import": {"medical-dozen": "https://example.org/x.json"}}
    default["testsets"]["other"] = {"path": "testsets/other.jsonl"}
    default["evaluation"]["references"] = ["official"]
    default["evaluation"]["testsets"] = ["medical-dozen", "other"]
    check_fails(default, "generators.official", "other")


def test_names_must_be_wildcard_safe(default):
    default["testsets"]["bad/name"] = {"path": "x.jsonl"}
    check_fails(default, "testsets")


def test_paper_grid_shape():
    paper = load(ROOT / "configs" / "paper.yaml")
    assert {"llama-7b", "llama-13b", "llama-2-7b", "llama-2-13b"} <= set(paper["backbones"])
    grids = [paper["evaluation"], *paper["figures"].values()]
    assert {r for g in grids for r in g["references"]} == {"text-davinci-003", "gpt-3.5-turbo", "gpt-4", "claude-2"}
    assert {j for g in grids for j in g["judges"]} == {"gpt-3.5-turbo", "claude-2"}
    assert {t for g in grids for t in g["testsets"]} == {"medinstruct-test", "icliniq", "alpacafarm"}
    assert {m["data"][0]["dataset"] for m in paper["models"].values()} == {"medinstruct-52k", "alpaca-52k", "medinstruct-selfinstruct"}


def test_alpacares_own_generation_prompt_needs_list_prompting(default):
    default["selfinstruct"]["prompt"] = "alpacare-official"   # the default run's teacher is local, prompting fields
    check_fails(default, "selfinstruct.prompt", "prompting: list")


def test_an_adapter_needs_a_hub_base(default):
    default["backbones"]["smollm2-135m"]["adapter"] = {"hf": "org/adapter", "revision": "a" * 40}
    check_fails(default, "backbones.smollm2-135m.adapter", "hub base model")


def test_fields_prompting_needs_a_local_teacher(default):
    default["llms"]["gpt-4"] = {"provider": "openai", "model": "gpt-4"}
    default["selfinstruct"]["teacher"] = "gpt-4"
    check_fails(default, "selfinstruct.prompting", "local teacher")
    default["selfinstruct"]["prompting"] = "list"
    validate(default)


def test_the_removed_breaker_seconds_is_named_with_what_replaces_it(default):
    default["llm"]["circuit_breaker"] = {"failures": 10, "seconds": 60}
    check_fails(default, "config.yaml: 'llm.circuit_breaker.seconds' was removed", "counts failed attempts",
                "timeout.read", "Delete `seconds`")


def test_old_cache_and_ledger_file_names_still_validate(default):
    default["llm"].update(cache=".cache/llm.sqlite", ledger="results/ledger.jsonl")
    assert validate(default)["llm"]["circuit_breaker"] == {"failures": 10, "rate": 0.5, "window": 100}
