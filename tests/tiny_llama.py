"""A tiny random-initialised Llama with a BOS-adding BPE tokenizer, built offline in a second
(tests and bench/train.py): the same code paths as LLaMA-7B, at a size a CPU trains in seconds.
`build_sp_llama` gives it a sentencepiece tokenizer instead, built like LLaMA's (BPE, byte
fallback, split digits, a word-start marker in front of the text), for what byte-level BPE hides."""

from __future__ import annotations

from pathlib import Path

from alpacare.template import PROMPT_NO_INPUT, PROMPT_WITH_INPUT

RECORDS = [
    {"instruction": "What usually causes a fever?", "input": "", "output": "A fever is usually caused by an infection."},
    {"instruction": "Name two symptoms of influenza.", "input": "", "output": "Cough and fever are common symptoms."},
    {"instruction": "Summarize the note.", "input": "The patient has a cough and a mild fever.",
     "output": "Cough with mild fever."},
    {"instruction": "What usually causes a cough?", "input": "", "output": "A cough is usually caused by a cold."},
    {"instruction": "Is a mild fever dangerous?", "input": "", "output": "A mild fever is rarely dangerous."},
    {"instruction": "What should a patient with a fever drink?", "input": "", "output": "Plenty of water."},
    {"instruction": "Classify the symptom.", "input": "headache", "output": "Neurological symptom."},
    {"instruction": "What is influenza?", "input": "", "output": "Influenza is a viral infection of the airways."},
]


def save_random_llama(out: str | Path, tokenizer, layers: int, hidden: int) -> None:
    """A LlamaForCausalLM sized for `tokenizer` (random weights, fixed seed), saved in `out`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)


def build_tiny_llama(out: str | Path, layers: int = 2, hidden: int = 64) -> str:
    """A LlamaForCausalLM (random weights, fixed seed) and its tokenizer in `out`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [PROMPT_WITH_INPUT, PROMPT_NO_INPUT] + [" ".join(r.values()) for r in RECORDS]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=512, special_tokens=["<unk>", "<s>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    # like LLaMA's tokenizer: BOS in front of every encoded text, no EOS
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bpe.token_to_id("<s>"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    save_random_llama(out, tokenizer, layers, hidden)
    tokenizer.save_pretrained(out)
    return str(out)


def build_sp_tokenizer(out: str | Path, vocab_size: int = 400):
    """A LLaMA-style sentencepiece tokenizer (LlamaTokenizer over a tokenizer.model trained here on
    the Alpaca prompts, the records and a few USMLE-style lines), saved in `out`."""
    import io

    import sentencepiece as spm
    from transformers import LlamaTokenizer

    corpus = [PROMPT_WITH_INPUT, PROMPT_NO_INPUT] + [" ".join(r.values()) for r in RECORDS] + [
        "The answer is C: Pulmonary embolism.", "(A) Vitamin C (B) Vitamin D (C) Iron",
        "Which vitamin deficiency causes scurvy? Options: A: Aspirin B: Heparin"]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus * 5), model_writer=model, vocab_size=vocab_size,
                                   model_type="bpe", byte_fallback=True, split_digits=True, character_coverage=1.0,
                                   unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "tokenizer.model").write_bytes(model.getvalue())
    # read through sentencepiece's protobuf schema; BOS in front of every text, as LLaMA's tokenizer_config asks
    tokenizer = LlamaTokenizer.from_pretrained(out, add_bos_token=True)
    tokenizer.save_pretrained(out)
    return tokenizer


def build_sp_llama(out: str | Path, layers: int = 2, hidden: int = 64) -> str:
    """A tiny LlamaForCausalLM (random weights, fixed seed) with the sentencepiece tokenizer above."""
    tokenizer = build_sp_tokenizer(out)
    save_random_llama(out, tokenizer, layers, hidden)
    return str(out)
