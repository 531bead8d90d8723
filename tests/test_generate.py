import importlib.util
import json
import sys
import types
from pathlib import Path

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


# --- the vLLM backend against a FAKE vllm module. vLLM needs a GPU, so it cannot run here:
# FakeVLLM only records what our provider hands it (engine arguments, prompts, LoRA requests)
# and answers with empty replies. What vLLM does with those calls is checked only on a GPU node.

class FakeVLLM(types.ModuleType):
    """Stands in for `import vllm`; every engine it makes is in .engines, every generate call in .calls."""

    __version__ = "0.0-fake"

    def __init__(self, tokenizer):
        super().__init__("vllm")
        self.engines, self.calls, tokenizer_ = [], [], tokenizer
        module = self

        class LLM:
            def __init__(self, **kwargs):
                self.kwargs = kwargs
                module.engines.append(self)

            def get_tokenizer(self):  # vLLM's LLM has one: the HF tokenizer of the model
                return tokenizer_

            def generate(self, prompts, sampling_params=None, use_tqdm=True, lora_request=None):
                module.calls.append({"prompts": prompts, "params": sampling_params, "lora_request": lora_request})
                reply = types.SimpleNamespace(text="", token_ids=[], finish_reason="stop")
                return [types.SimpleNamespace(prompt_token_ids=p["prompt_token_ids"] if isinstance(p, dict) else [],
                                              outputs=[reply]) for p in prompts]

        class SamplingParams:
            def __init__(self, **kwargs):
                self.kwargs = kwargs

        class LoRARequest:
            def __init__(self, lora_name, lora_int_id, lora_path):
                self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path

        self.LLM, self.SamplingParams = LLM, SamplingParams
        self.lora = types.ModuleType("vllm.lora")
        self.lora.request = types.ModuleType("vllm.lora.request")
        self.lora.request.LoRARequest = LoRARequest

    def install(self, monkeypatch):
        for name, module in (("vllm", self), ("vllm.lora", self.lora), ("vllm.lora.request", self.lora.request)):
            monkeypatch.setitem(sys.modules, name, module)
        return self


# a chat template that writes BOS itself, as LLaMA-2-chat's and many others do
BOS_CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                     "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture()
def chat_llama(tmp_path):
    """The tiny LLaMA (its tokenizer adds BOS to every text) with a chat template that holds BOS."""
    from transformers import AutoTokenizer

    from tiny_llama import build_tiny_llama

    path = build_tiny_llama(tmp_path / "llama")
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = BOS_CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    return path, AutoTokenizer.from_pretrained(path)


def test_vllm_gets_the_token_ids_of_the_transformers_path(chat_llama, monkeypatch):
    """A chat template that writes BOS, turned into text and handed to vLLM, would get a second
    BOS from vLLM's own special tokens; the transformers path has one."""
    from alpacare.llm.local import prompt_ids
    from alpacare.llm.vllm_local import VLLMProvider
    from conftest import fake_gpus

    path, tokenizer = chat_llama
    fake_gpus(monkeypatch, (8, 0))
    vllm = FakeVLLM(tokenizer).install(monkeypatch)
    requests = [Request.chat(path, "Is a mild fever dangerous?", max_tokens=8),
                Request.chat(path, "Define sepsis.", system="You are a doctor.", max_tokens=8),
                Request(model=path, prompt="### Instruction:\nDefine sepsis.\n\n### Response:", max_tokens=8)]
    VLLMProvider(path).complete_batch(requests)
    (call,) = vllm.calls
    for request, prompt in zip(requests, call["prompts"]):
        assert isinstance(prompt, dict), f"a text prompt ({prompt!r}) would be tokenized again by vLLM"
        ids = prompt["prompt_token_ids"]
        assert ids == prompt_ids(tokenizer, request)  # exactly what the transformers path feeds its model
        assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    assert vllm.engines[0].kwargs["dtype"] == "bfloat16" and call["lora_request"] is None


def test_vllm_gets_all_of_a_jobs_prompts_in_one_call(chat_llama, monkeypatch):
    """vLLM batches continuously; waves of batch_size (32) would each wait for their longest reply."""
    from alpacare.llm import LLM
    from alpacare.llm.vllm_local import VLLMProvider
    from conftest import fake_gpus

    path, tokenizer = chat_llama
    fake_gpus(monkeypatch, (8, 0))
    vllm = FakeVLLM(tokenizer).install(monkeypatch)
    LLM(VLLMProvider(path), batch_size=32).run([Request.chat(path, f"Is fever {n} dangerous?") for n in range(70)])
    assert [len(call["prompts"]) for call in vllm.calls] == [70]


def test_vllm_computes_in_float16_on_gpus_before_ampere(chat_llama, monkeypatch):
    from alpacare.llm.vllm_local import VLLMProvider
    from conftest import fake_gpus

    path, tokenizer = chat_llama
    fake_gpus(monkeypatch, (7, 0), (7, 0))  # two V100: vLLM refuses bfloat16 there
    vllm = FakeVLLM(tokenizer).install(monkeypatch)
    VLLMProvider(path).complete_batch([Request(model=path, prompt="Hi", max_tokens=2)])
    assert vllm.engines[0].kwargs | {"model": None} == {"model": None, "dtype": "float16", "seed": 0,
                                                        "tensor_parallel_size": 2}


def test_vllm_serves_a_quantised_lora_checkpoint_as_base_plus_adapter(chat_llama, monkeypatch, tmp_path):
    """lora-8bit/-4bit checkpoints hold adapter/ and base_model.json, no weights: vLLM loads
    the base (in 16-bit) with enable_lora and applies the adapter to every request."""
    import shutil

    from alpacare.llm.vllm_local import VLLMProvider
    from conftest import fake_gpus

    base, tokenizer = chat_llama
    checkpoint = tmp_path / "checkpoints" / "medalpaca-8bit"
    (checkpoint / "adapter").mkdir(parents=True)
    (checkpoint / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 16}))
    (checkpoint / "base_model.json").write_text(json.dumps({"base": "../../llama", "bits": 8}))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(base) / name, checkpoint / name)
    fake_gpus(monkeypatch, (8, 0))
    vllm = FakeVLLM(tokenizer).install(monkeypatch)
    VLLMProvider(str(checkpoint)).complete_batch([Request(model=str(checkpoint), prompt="Hi", max_tokens=2)] * 3)
    engine = vllm.engines[0].kwargs
    assert Path(engine["model"]) == Path(base).resolve()
    assert (engine["enable_lora"], engine["max_lora_rank"], engine["max_loras"]) == (True, 8, 1)
    (call,) = vllm.calls
    lora = call["lora_request"]
    assert (lora.lora_name, lora.lora_int_id, Path(lora.lora_path)) == ("adapter", 1, checkpoint / "adapter")


# --- AlpaCare's protocol (protocol: alpacare): test_generation/generation.py -------------------------

def test_alpacares_protocol_keeps_everything_after_response_with_no_stop_strings(tmp_path):
    from fakeapi import FakeAPI

    write_jsonl(tmp_path / "t.jsonl", [{"id": 7, "instruction": "Define sepsis.", "input": "", "match": "Define sepsis."}])
    with FakeAPI() as api:  # echoes the prompt: a model that runs on into the template's own blocks
        generate_outputs(tmp_path / "t.jsonl", tmp_path / "out.json", generator="g", kind="alpaca",
                         spec={"provider": "openai", "model": "m", "base_url": api.openai_url, "keyless": True},
                         settings={"cache": str(tmp_path / "cache.sqlite")}, max_new_tokens=60, protocol="alpacare")
        body = api.requests[-1]["body"]
    assert body["temperature"] == 0 and not body.get("stop")
    [record] = read_json(tmp_path / "out.json")
    # the echoed prompt runs through "### Instruction:" up to its own "Response:", where AlpaCare's split ends
    assert record["output"].startswith("echo: Below is an instruction") and "### Instruction:\nDefine sepsis." in record["output"]
    assert record["output"].endswith("\n\n### ") and record["protocol"] == "alpacare"


def test_alpacare_response_is_generation_pys_split():
    from alpacare.stages.generate import alpacare_response
    from alpacare.template import alpaca_prompt

    prompt = alpaca_prompt("Define sepsis.")
    run_on = " A dysregulated response to infection.\n\n### Instruction:\nDefine shock.\n\n### Input:\nA"
    assert alpacare_response(prompt, run_on) == run_on  # kept whole: no stop strings, nothing stripped
    assert alpacare_response(prompt, "Yes.\n### Response:\nMore.") == "Yes.\n### "
    # an instruction that itself says "Response:" yields a piece of the prompt, as generation.py's split did
    assert alpacare_response(alpaca_prompt("Rate the Response: fine?"), " Good.").startswith(" fine?")


def test_alpacares_protocol_generates_to_max_length_alone(tmp_path):
    from alpacare.stages.generate import new_token_limits
    from alpacare.template import alpaca_prompt, encode_prompt
    from tiny_llama import build_sp_tokenizer

    tokenizer = build_sp_tokenizer(tmp_path / "sp")
    prompt = alpaca_prompt("Name two symptoms of influenza.")
    assert new_token_limits(tokenizer, [prompt], None, 1024) == [1024 - len(encode_prompt(tokenizer, prompt))]
    with pytest.raises(ValueError, match="needs max_new_tokens or max_length"):
        new_token_limits(tokenizer, [prompt], None, None)
