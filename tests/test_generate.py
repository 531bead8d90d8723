import importlib.util

import pytest

from alpacare.io import read_json, write_jsonl
from alpacare.llm import LLMError, Request, make_provider
from alpacare.stages.generate import ALPACA_STOPS, generate_outputs


def test_alpaca_generation_is_greedy_pinned_and_cut_at_the_next_block(tmp_path):
    from fakeapi import FakeAPI

    write_jsonl(tmp_path / "t.jsonl", [{"id": 7, "instruction": "Define sepsis.", "input": "", "match": "Define sepsis."}])
    with FakeAPI() as api:  # echoes the prompt: the Alpaca template's own blocks stand in for a model that runs on
        generate_outputs(tmp_path / "t.jsonl", tmp_path / "out.json", generator="g", kind="alpaca",
                         spec={"provider": "openai", "model": "m", "base_url": api.openai_url, "keyless": True},
                         settings={"cache": str(tmp_path / "cache.sqlite")}, max_new_tokens=40)
        body = api.requests[-1]["body"]
    assert body["temperature"] == 0 and body["max_tokens"] == 40 and body["stop"] == list(ALPACA_STOPS)
    [record] = read_json(tmp_path / "out.json")
    assert record["id"] == 7 and record["generator"] == "g"
    assert record["output"] == "echo: Below is an instruction that describes a task. Write a response that appropriately completes the request."


def test_generation_stops_only_where_a_new_alpaca_block_starts():
    answer = "Rest and fluids.\n### Response to treatment\nThe fever settles in two days.\n### Inputs to monitor\nTemperature."
    reply = answer + "\n### Instruction:\nWrite another task."
    # every backend (the local decoder, vLLM, OpenAI-compatible servers) cuts at the first stop string
    first = min((reply.index(stop) for stop in ALPACA_STOPS if stop in reply), default=len(reply))
    assert reply[:first] == answer
    for block in ("Instruction", "Input", "Response"):
        assert f"\n### {block}:" in ALPACA_STOPS


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_the_vllm_backend_says_what_is_missing(tmp_path):
    provider = make_provider({"provider": "local", "backend": "vllm"}, model_dir=str(tmp_path))
    with pytest.raises(LLMError, match="generation.backend is vllm, but the vllm package is not installed"):
        provider.complete_batch([Request(model=str(tmp_path), prompt="Hi")])


def test_max_length_counts_the_prompt_as_the_papers_maximum_length_does(tmp_path):
    """generation.max_length (the paper: 2048, LLaMA's context) bounds prompt + output: each item
    may generate what its own prompt leaves, BOS included, and never more than max_new_tokens."""
    from alpacare.stages.generate import new_token_limits
    from alpacare.template import alpaca_prompt, encode_prompt
    from tiny_llama import build_sp_tokenizer

    tokenizer = build_sp_tokenizer(tmp_path / "sp")
    prompts = [alpaca_prompt("Name two symptoms of influenza."), alpaca_prompt("Summarize the note.", "The patient has a cough " * 8)]
    lengths = [len(encode_prompt(tokenizer, p)) for p in prompts]
    assert lengths[0] < lengths[1] and encode_prompt(tokenizer, prompts[0])[0] == tokenizer.bos_token_id
    limit = lengths[1] + 10
    assert new_token_limits(tokenizer, prompts, 1000, limit) == [limit - lengths[0], 10]
    assert new_token_limits(tokenizer, prompts, 5, limit) == [5, 5]
    assert new_token_limits(None, prompts, 64, None) == [64, 64]
    with pytest.raises(ValueError, match=r"item 1: its prompt alone takes \d+ tokens, at least generation.max_length"):
        new_token_limits(tokenizer, prompts, 64, lengths[1])
