"""The local transformers provider on the real bundled SmolLM2-135M-Instruct."""

import pytest
import torch

from alpacare import hardware
from alpacare.llm import LLM, Cache, Request
from alpacare.llm.local import LocalProvider, fingerprint
from alpacare.train import IGNORE, encode_example


@pytest.fixture(scope="module")
def llm(smollm2_dir):
    torch.set_num_threads(2)
    return LLM(LocalProvider(smollm2_dir), batch_size=16)


def test_greedy_is_deterministic_and_independent_of_the_batch(llm, smollm2_dir):
    a = Request.chat(smollm2_dir, "What is the normal range of adult resting heart rate?", max_tokens=24)
    b = Request(model=smollm2_dir, prompt="Hypertension is defined as", max_tokens=12)
    alone = llm.run([a])[0]
    together = llm.run([b, a, b])
    assert alone.text
    if hardware.precision() == "fp32":  # in 16-bit (a GPU) sums depend on the batch: bench/gpu_check.py counts those
        assert alone.text == together[1].text
    assert together[0].text == together[2].text
    assert alone.finish_reason == "length" and alone.output_tokens == 24


def test_seeded_sampling_is_reproducible(llm, smollm2_dir):
    prompt = "A short list of common medications:"
    requests = [Request(model=smollm2_dir, prompt=prompt, temperature=1.0, top_p=0.9, max_tokens=16, seed=s) for s in (1, 1, 2)]
    one, same, other = llm.run(requests)
    assert one.text == same.text and one.text != other.text


def test_stop_strings_cut_the_text(llm, smollm2_dir):
    (r,) = llm.run([Request(model=smollm2_dir, prompt="1. Aspirin\n2. Ibuprofen\n3.", max_tokens=40, stop=("\n",))])
    assert "\n" not in r.text and r.finish_reason == "stop"


def test_fields_are_forced_in_order(llm, smollm2_dir):
    fields = (("Type", 8), ("Topic", 8), ("Difficulty", 3), ("Instruction", 30))
    prompt = "### 1\nType: Open Q&A\nTopic: Cardiology\nDifficulty: 2\nInstruction: Explain what angina is.\n### 2\n"
    requests = [Request(model=smollm2_dir, prompt=prompt, fields=fields, temperature=0.8, seed=s) for s in range(4)]
    for r in llm.run(requests):
        lines = r.text.rstrip("\n").split("\n")
        assert [line.split(":")[0] for line in lines] == ["Type", "Topic", "Difficulty", "Instruction"], r.text


def test_choices_are_scored_by_log_probability(llm, smollm2_dir):
    prompt = "The human heart has four"
    (r,) = llm.run([Request(model=smollm2_dir, prompt=prompt, choices=(" bananas", " chambers"))])
    assert len(r.choice_logprobs) == 2 and all(lp < 0 for lp in r.choice_logprobs)
    assert r.choice_logprobs[1] > r.choice_logprobs[0] + 3 and r.text == " chambers"
    # a chat request is scored after the chat template's assistant header
    (chat,) = llm.run([Request.chat(smollm2_dir, "Is aspirin an NSAID?", choices=("Yes", "No"))])
    assert chat.choice_logprobs != r.choice_logprobs and chat.text in ("Yes", "No")


def test_cache_identity_follows_the_weights(smollm2_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(smollm2_dir, copy)
    assert fingerprint(copy) == fingerprint(smollm2_dir)
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ")
    assert fingerprint(copy) != fingerprint(smollm2_dir)


def test_local_replies_are_cached(smollm2_dir, tmp_path):
    cache = Cache(tmp_path / "c.sqlite")
    request = Request(model=smollm2_dir, prompt="Insulin is", max_tokens=6)
    first = LLM(LocalProvider(smollm2_dir), cache).run([request])[0]
    second = LLM(LocalProvider(smollm2_dir), cache).run([request])[0]
    assert second.cached and second.text == first.text


def test_training_masks_the_prompt_and_appends_eos(smollm2_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    record = {"instruction": "Define anemia.", "input": "", "output": "A low red cell mass."}
    example = encode_example(tokenizer, record, max_length=512)
    targets = [t for t in example["labels"] if t != IGNORE]
    assert tokenizer.decode(targets) == "A low red cell mass." + tokenizer.eos_token
    first_target = example["labels"].index(targets[0])
    assert example["labels"][:first_target] == [IGNORE] * first_target
    assert tokenizer.decode(example["input_ids"][:first_target]).endswith("### Response:")
    assert len(encode_example(tokenizer, record, max_length=8)["input_ids"]) == 8


def test_finished_rows_leave_each_cache_layer_on_its_own_device():
    """With device_map over two GPUs, layer 0's cache sits on the first GPU and layer 1's on
    the second. Here 'meta' stands in for the first GPU (where the model's inputs, the mask,
    live) and the CPU for the second: indices made on the first device and used on the second
    pick garbage rows on a CPU (CUDA raises instead). Each layer must get its own rows."""
    from transformers import DynamicCache

    from alpacare.llm.local import keep_rows

    cache = DynamicCache()
    first = torch.zeros(3, 2, 4, 5, device="meta")
    second = torch.arange(3.0).reshape(3, 1, 1, 1).expand(3, 2, 4, 5).contiguous()  # row i holds i
    cache.update(first, first.clone(), 0)
    cache.update(second, second.clone(), 1)
    mask = keep_rows(cache, torch.ones(3, 4, dtype=torch.long, device="meta"), [0, 2])
    assert mask.shape == (2, 4) and mask.device.type == "meta"
    assert cache.layers[0].keys.shape == (2, 2, 4, 5) and cache.layers[0].keys.device.type == "meta"
    for kept in (cache.layers[1].keys, cache.layers[1].values):
        assert kept.device.type == "cpu" and kept[:, 0, 0, 0].tolist() == [0.0, 2.0]


def test_a_decode_batch_logs_its_progress_in_the_job_log(smollm2_dir, caplog):
    provider = LocalProvider(smollm2_dir, progress_seconds=0)  # a line every decode step
    requests = [Request(model=smollm2_dir, prompt="Insulin is", max_tokens=3),
                Request(model=smollm2_dir, prompt="The heart has", max_tokens=6)]
    with caplog.at_level("INFO", logger="alpacare.llm"):
        provider.complete_batch(requests)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("local decode: ")]
    assert lines[0].startswith("local decode: 0/2 done, step 1 of at most 6, 2 tokens, ")
    assert "tokens/s, at most ~" in lines[0] and lines[0].endswith("s left")
    assert any(line.startswith("local decode: 1/2 done, step 3 of at most 6, 6 tokens") for line in lines)
    assert lines[-1].startswith("local decode: 2/2 done, step 6 of at most 6, 9 tokens") and lines[-1].endswith("~0s left")


def test_a_7b_models_batch_is_what_its_kv_cache_leaves_room_for():
    """Llama-2-7B on a 40 GB GPU beside its 12.6 GiB of bf16 weights: 32 rows of 2048 tokens
    would need 32 GiB of KV cache (512 KiB a token); Llama-3-8B's grouped KV heads (8 of 32)
    fit four times the rows."""
    from transformers import LlamaConfig

    from alpacare.llm.local import kv_bytes_per_token, rows_that_fit

    llama2 = LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                         vocab_size=32000)
    llama3 = LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                         vocab_size=128256)
    assert kv_bytes_per_token(llama2, torch.bfloat16) == 512 * 1024
    free = int((40e9 - 12.6 * 2**30))
    rows = rows_that_fit(free, kv_bytes_per_token(llama2, torch.bfloat16), 2048, llama2.vocab_size)
    assert 16 <= rows < 32 and rows * 2048 * 512 * 1024 <= free
    assert rows_that_fit(free, kv_bytes_per_token(llama3, torch.bfloat16), 2048, llama3.vocab_size) >= 4 * rows - 3


@pytest.fixture()
def rows_seen(smollm2_dir):
    """The batch rows of every forward pass of the loaded model."""
    from alpacare.checkpoints import load_model

    model, _ = load_model(smollm2_dir)
    seen = []
    handle = model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_ids"].shape[0]),
                                             with_kwargs=True)
    yield seen
    handle.remove()


def test_options_are_scored_in_chunks_of_rows(smollm2_dir, rows_seen, monkeypatch):
    """Scoring copies a question's cache once per option: 8 questions of 5 options are 40 rows
    in one pass unless chunked; the scores do not depend on the chunks."""
    from alpacare.llm import local

    options = (" aspirin", " paracetamol", " ibuprofen tablets", " no treatment at all", " metformin")
    requests = [Request(model=smollm2_dir, prompt=f"Question {n}: which drug? Answer:", choices=options) for n in range(8)]
    monkeypatch.setattr(local, "CPU_ROWS", 1000)
    whole = LocalProvider(smollm2_dir).complete_batch(requests)
    assert max(rows_seen) == 40
    rows_seen.clear()
    monkeypatch.setattr(local, "CPU_ROWS", 12)
    chunked = LocalProvider(smollm2_dir).complete_batch(requests)
    assert max(rows_seen) == 10  # two questions a pass
    for a, b in zip(whole, chunked):
        assert a.text == b.text and a.choice_logprobs == pytest.approx(b.choice_logprobs, abs=1e-4)


def test_generation_runs_in_batches_of_at_most_the_row_limit(smollm2_dir, rows_seen, monkeypatch):
    from alpacare.llm import local

    requests = [Request(model=smollm2_dir, prompt=f"Fact {n} about insulin:", max_tokens=4) for n in range(5)]
    monkeypatch.setattr(local, "CPU_ROWS", 1000)
    whole = LocalProvider(smollm2_dir).complete_batch(requests)
    assert max(rows_seen) == 5
    rows_seen.clear()
    monkeypatch.setattr(local, "CPU_ROWS", 2)
    chunked = LocalProvider(smollm2_dir).complete_batch(requests)
    assert max(rows_seen) == 2
    if hardware.precision() == "fp32":
        assert [r.text for r in chunked] == [r.text for r in whole]


def test_chunks_keep_order_and_stay_within_the_limit_of_their_longest_row():
    from alpacare.llm.local import chunks

    def limit(tokens):
        return 1000 // tokens  # rows of `tokens` tokens that fit

    # 5-row questions of 100 tokens (10 rows fit), then a long one of 250 (4 rows fit): alone
    assert chunks([(5, 100), (5, 100), (5, 100), (5, 250), (1, 100)], limit) == [[0, 1], [2], [3], [4]]
    assert chunks([(1, 10)] * 3, lambda tokens: 2) == [[0, 1], [2]] and chunks([], limit) == []
