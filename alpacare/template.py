"""The one prompt template of tuned models: used to build training examples and to
generate with tuned (and untuned baseline) models, so both always agree.

Stanford Alpaca's recipe, as AlpaCare trained with it: the prompt ends with "### Response:"
and the target follows directly (no newline of ours); the tokenizer's BOS token comes first
wherever the tokenizer adds one (LLaMA's does, SmolLM2's does not)."""

from __future__ import annotations

from .seeds import NO_INPUT

PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The Stanford Alpaca prompt, used for training and for generating with tuned models."""
    if input and input != NO_INPUT:
        return PROMPT_WITH_INPUT.format(instruction=instruction, input=input)
    return PROMPT_NO_INPUT.format(instruction=instruction)


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts its BOS token in front of a text it encodes (LLaMA: yes)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer.encode("a", add_special_tokens=True)[:1] == [bos]


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of a raw prompt exactly as training saw it: BOS (where the tokenizer adds
    one), then the text. Only BOS is taken from the tokenizer's special tokens: a tokenizer
    that would also append EOS must not end the prompt."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    return [tokenizer.bos_token_id] + ids if adds_bos(tokenizer) else ids


def encode_continuation(tokenizer, prompt: str, continuation: str) -> tuple[list[int], list[int]]:
    """(prompt ids, continuation ids) exactly as training tokenized a prompt and the target
    that follows it (Stanford Alpaca's recipe, AlpaCare's and medAlpaca's checkpoints): the
    whole text encoded once, BOS first where the tokenizer adds one, split where the prompt's
    own tokens end. Encoding the continuation apart differs for a sentencepiece (LLaMA)
    tokenizer: it gets a word-start marker of its own ("(A)" after "### Response:" becomes
    "▁(" instead of "("), and a token spanning the boundary is split; byte-level BPE
    (SmolLM2) hides both. A token that spans the boundary counts as the continuation's."""
    whole = encode_prompt(tokenizer, prompt + continuation)
    alone = encode_prompt(tokenizer, prompt)
    shared = 0
    while shared < min(len(whole), len(alone)) and whole[shared] == alone[shared]:
        shared += 1
    if shared == len(whole):
        raise ValueError(f"the continuation {continuation!r} adds no token to the prompt")
    return whole[:shared], whole[shared:]
