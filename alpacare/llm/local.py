"""A local transformers model behind the same interface as the API providers.

Generation is one batched decode loop with a KV cache, written out here instead of
`model.generate` because the pipeline needs three things generate does not give together:
a per-request sampling seed that does not depend on what else is in the batch (so a retry
or a resume asks the same thing), constrained `Name: value` field decoding for a small
teacher model, and one prefill shared by all requests with the same prompt.
"""

from __future__ import annotations

import logging
import time

import torch

from .. import hardware
from ..checkpoints import fingerprint, load_model, model_identity
from ..versions import check_floors
from ..template import encode_continuation, encode_prompt
from .base import LLMError, Provider, Request, Response

# Part of every local reply's cache key: bump it whenever a change here (decoding, prompt
# formatting, scoring) changes what a request returns, so old cached replies are not reused.
DECODER_VERSION = 3

log = logging.getLogger("alpacare.llm")

# Rows (requests, or a question's options when scoring) in one forward pass. On a GPU, as many
# as the free memory holds beside the weights: each row's KV cache for its longest sequence and
# its last logits; on a CPU memory is seldom the limit, and a fixed batch keeps every core busy.
CPU_ROWS = 32
FREE_MEMORY_FRACTION = 0.85  # of the free GPU memory: the allocator's fragmentation and activations take the rest
LOGIT_COPIES = 3  # a row's last logits in fp32, their softmax and the sampling's working copy


def kv_bytes_per_token(config, dtype: torch.dtype) -> int:
    """Bytes of KV cache one token takes: layers x KV heads x head size x (key + value) x dtype
    bytes (Llama-2-7B in 16-bit: 32 x 32 x 128 x 2 x 2 = 512 KiB)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return text.num_hidden_layers * kv_heads * head_dim * 2 * dtype.itemsize


def rows_that_fit(free_bytes: int, kv_per_token: int, tokens_per_row: int, vocab: int) -> int:
    """How many rows of `tokens_per_row` tokens a forward pass may carry in `free_bytes` of GPU memory."""
    per_row = kv_per_token * tokens_per_row + LOGIT_COPIES * 4 * vocab
    return max(1, int(FREE_MEMORY_FRACTION * free_bytes) // per_row)


def row_limit(model, tokens_per_row: int) -> int:
    """Rows per forward pass for this model: from the free memory of its GPUs, or CPU_ROWS."""
    devices = {p.device for p in model.parameters() if p.device.type == "cuda"}
    if not devices:
        return CPU_ROWS
    free = sum(torch.cuda.mem_get_info(d)[0] for d in devices)
    config = model.config
    return rows_that_fit(free, kv_bytes_per_token(config, model.dtype), tokens_per_row, config.get_text_config().vocab_size)


def row_tokens(tokenizer, request: Request) -> int:
    """The longest a request's rows grow: its prompt and its longest option (counted in
    characters, at least its tokens), its fields' limits and names, or its token budget."""
    prompt = len(prompt_ids(tokenizer, request))
    if request.choices:
        return prompt + max(map(len, request.choices))
    if request.fields:
        return prompt + sum(limit + 8 for _, limit in request.fields)
    return prompt + request.max_tokens


def chunks(sizes: list[tuple[int, int]], limit) -> list[list[int]]:
    """Consecutive groups of items, each item (rows, tokens per row), so that a group's rows
    stay within limit(its longest tokens per row). Returns the items' indices per group."""
    groups, current, rows, longest = [], [], 0, 0
    for i, (n, tokens) in enumerate(sizes):
        wider = max(longest, tokens)
        if current and rows + n > limit(wider):
            groups.append(current)
            current, rows, wider = [], 0, tokens
        current.append(i)
        rows, longest = rows + n, wider
    return groups + ([current] if current else [])


class LocalProvider(Provider):
    name = "local"
    batched = True

    def __init__(self, model_dir: str, progress_seconds: float = 10.0):
        self.model_dir = str(model_dir)
        self.progress_seconds = progress_seconds  # a decode loop's progress line in the job log, this often
        self._versions_checked = False

    def identity(self) -> dict:
        # the weights, tokenizer and generation settings by content, and the precision the
        # model runs in here (bf16, fp16 or fp32 decode differently)
        return {"weights": model_identity(self.model_dir), "decoder": DECODER_VERSION, "precision": hardware.precision()}

    def legacy_identity(self) -> dict:
        return {"weights": fingerprint(self.model_dir), "decoder": DECODER_VERSION}

    def complete_batch(self, requests: list[Request]) -> list[Response]:
        for r in requests:
            if r.model != self.model_dir:
                raise LLMError(f"request for model {r.model!r} sent to local provider of {self.model_dir!r}")
        if not self._versions_checked:  # below a floor, decoding fails deep inside with a raw TypeError
            check_floors(["torch", "transformers"])
            self._versions_checked = True
        model, tokenizer = load_model(self.model_dir)
        out: list[Response | None] = [None] * len(requests)
        scoring = [i for i, r in enumerate(requests) if r.choices]
        generating = [i for i, r in enumerate(requests) if not r.choices]
        with torch.inference_mode():
            # in chunks the free memory holds: scoring copies the prompt's cache once per option
            # (32 questions of 5 options: 160 rows), generation holds each row's cache to its longest
            def limit(tokens):
                return row_limit(model, tokens)

            for chunk in chunks([(len(requests[i].choices), row_tokens(tokenizer, requests[i])) for i in scoring], limit):
                mine = [scoring[n] for n in chunk]
                for i, resp in zip(mine, self._score(model, tokenizer, [requests[i] for i in mine])):
                    out[i] = resp
            for chunk in chunks([(1, row_tokens(tokenizer, requests[i])) for i in generating], limit):
                mine = [generating[n] for n in chunk]
                decoder = _Decoder(model, tokenizer, [requests[i] for i in mine], self.progress_seconds)
                for i, resp in zip(mine, decoder.run()):
                    out[i] = resp
        return out

    def _score(self, model, tokenizer, requests: list[Request]) -> list[Response]:
        """Sum of log-probabilities of each choice as the continuation of the prompt. Each
        prompt is prefilled once, in one batch; every choice then continues from its cache."""
        if not requests:
            return []
        device = model.device
        prompts = [prompt_ids(tokenizer, r) for r in requests]
        # an Alpaca prompt and its choice as training tokenized them: one text, split where the
        # prompt ends (a sentencepiece tokenizer encodes a choice apart differently); a chat
        # prompt ends with the template's own tokens, so its choices follow as encoded alone
        split = [[encode_continuation(tokenizer, r.prompt, c) if r.prompt is not None
                  else (prompts[i], tokenizer.encode(c, add_special_tokens=False)) for c in r.choices]
                 for i, r in enumerate(requests)]
        choices = [[ids for _, ids in cs] for cs in split]
        row_prompts = [p for cs in split for p, _ in cs]
        pad = pad_id(tokenizer)
        flat = [c for cs in choices for c in cs]
        cache, last, mask = prefill(model, row_prompts, pad)
        first = torch.log_softmax(last, dim=-1)
        scores = [first[row, c[0]].item() for row, c in enumerate(flat)]
        rest = max(len(c) for c in flat) - 1  # choice tokens after the first, fed on the cache
        if rest > 0:
            step = torch.tensor([c[:-1] + [pad] * (rest + 1 - len(c)) for c in flat], device=device)
            step_mask = torch.tensor([[1] * (len(c) - 1) + [0] * (rest + 1 - len(c)) for c in flat], device=device)
            positions = torch.tensor([[len(p) + j for j in range(rest)] for p in row_prompts], device=device)
            logits = model(input_ids=step, attention_mask=torch.cat([mask, step_mask], dim=1),
                           position_ids=positions, past_key_values=cache).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            for row, c in enumerate(flat):
                scores[row] += sum(logprobs[row, j - 1, c[j]].item() for j in range(1, len(c)))
        responses, start = [], 0
        for r, prompt, cs in zip(requests, prompts, choices):
            mine = scores[start : start + len(cs)]
            start += len(cs)
            best = max(range(len(mine)), key=mine.__getitem__)
            responses.append(Response(text=r.choices[best], input_tokens=len(prompt), output_tokens=0, choice_logprobs=mine))
        return responses


def prompt_ids(tokenizer, request: Request) -> list[int]:
    if request.messages is not None:
        messages = [{"role": role, "content": content} for role, content in request.messages]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    return encode_prompt(tokenizer, request.prompt)  # the Alpaca prompt exactly as training encoded it, BOS included


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def keep_rows(cache, mask: torch.Tensor, slots: list[int]) -> torch.Tensor:
    """Keep only the batch rows `slots` in the KV cache and the attention mask (finished rows
    leave the batch). With device_map over several GPUs each cache layer lives on its own
    layer's GPU, so the indices must reach each layer's device: reorder_cache moves them
    there (batch_select_indices would index a second GPU's layer with the first GPU's indices
    and fail as soon as one row finishes early). Returns the mask."""
    keep = torch.tensor(slots)
    cache.reorder_cache(keep)
    return mask.index_select(0, keep.to(mask.device))


def prefill(model, prompts: list[list[int]], pad: int):
    """Run each distinct prompt once, left-padded in one batch, and fan its KV cache out to
    one row per entry of `prompts`. Returns (cache, last-token logits, attention mask) per row."""
    unique: dict[tuple, int] = {}
    owner = [unique.setdefault(tuple(p), len(unique)) for p in prompts]
    width = max(len(p) for p in unique)
    device = model.device
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in unique], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in unique], device=device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                use_cache=True, logits_to_keep=1)
    index = torch.tensor(owner, device=device)
    cache = out.past_key_values
    cache.reorder_cache(index)
    return cache, out.logits[:, -1].float().index_select(0, index), mask.index_select(0, index)


class _Progress:
    """The decode loop's line in the job log every `every` seconds and at the end: rows done
    of the batch, tokens and their rate, and the time left at most (were every row to run to
    its token budget), in the form of the LLM client's progress lines."""

    def __init__(self, total: int, budget: int, every: float, clock):
        self.total, self.budget, self.every, self.clock = total, budget, every, clock
        self.start = self.last = clock()
        self.steps = self.done = self.tokens = self.logged = 0

    def step(self, done: int, decoded: int) -> None:
        self.steps += 1
        self.done, self.tokens = done, self.tokens + decoded
        if self.clock() - self.last >= self.every:
            self.last = self.clock()
            self.log()

    def finish(self) -> None:
        if self.logged != self.steps:
            self.log()

    def log(self) -> None:
        self.logged = self.steps
        elapsed = max(self.clock() - self.start, 1e-9)
        left = (self.budget - self.steps) * elapsed / max(self.steps, 1) if self.done < self.total else 0.0
        log.info("local decode: %d/%d done, step %d of at most %d, %d tokens, %.1f tokens/s, at most ~%.0fs left",
                 self.done, self.total, self.steps, self.budget, self.tokens, self.tokens / elapsed, left)


class _Row:
    """Decoding state of one request."""

    def __init__(self, request: Request, tokenizer, prompt_len: int):
        self.request = request
        self.prompt_len = prompt_len
        self.generated: list[int] = []
        self.forced: list[int] = []
        self.generator = torch.Generator().manual_seed(request.seed or 0)
        self.done = False
        self.finish_reason = "stop"
        self.text = ""
        # constrained fields: the names are forced, the values sampled up to a newline
        self.field = 0
        self.value_start = 0
        self.values: list[str] = []
        if request.fields:
            self.forced = tokenizer.encode(request.fields[0][0] + ":", add_special_tokens=False)
            self.value_start = len(self.forced)


class _Decoder:
    def __init__(self, model, tokenizer, requests: list[Request], progress_seconds: float = 10.0, clock=time.monotonic):
        self.model, self.tok = model, tokenizer
        self.requests = requests
        self.progress_seconds, self.clock = progress_seconds, clock
        eos = model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
        self.eos.discard(None)
        self.pad = pad_id(tokenizer)

    def run(self) -> list[Response]:
        device = self.model.device
        prompts = [prompt_ids(self.tok, r) for r in self.requests]
        # requests with the same prompt share one prefill
        cache, logits, mask = prefill(self.model, prompts, self.pad)

        rows = [_Row(r, self.tok, len(p)) for r, p in zip(self.requests, prompts)]
        active = list(range(len(rows)))  # row numbers still decoding, in batch order
        vocab = logits.shape[-1]
        seen = torch.zeros(len(rows), vocab, dtype=torch.bool)
        progress = _Progress(len(rows), max(self._budget(r) for r in self.requests), self.progress_seconds, self.clock)
        while active:
            next_tokens = self._choose([rows[i] for i in active], logits, seen[active])
            still = []
            for slot, i in enumerate(active):
                token = next_tokens[slot]
                self._advance(rows[i], token)
                seen[i, token] = True
                if not rows[i].done:
                    still.append(slot)
            progress.step(len(rows) - len(still), len(active))
            if not still:
                break
            if len(still) < len(active):  # drop finished rows from the batch
                mask = keep_rows(cache, mask, still)
                next_tokens = [next_tokens[s] for s in still]
                active = [active[s] for s in still]
            mask = torch.cat([mask, torch.ones(len(active), 1, dtype=mask.dtype, device=device)], dim=1)
            step = torch.tensor([[t] for t in next_tokens], device=device)
            pos = torch.tensor([[rows[i].prompt_len + len(rows[i].generated) - 1] for i in active], device=device)
            out = self.model(input_ids=step, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits = out.logits[:, -1].float()
        progress.finish()
        return [
            Response(text=r.text, finish_reason=r.finish_reason, input_tokens=r.prompt_len, output_tokens=len(r.generated))
            for r in rows
        ]

    def _budget(self, request: Request) -> int:
        """The most tokens a request can take: max_tokens, or its fields' limits and names."""
        if not request.fields:
            return request.max_tokens
        return sum(limit + len(self.tok.encode("\n" + name + ":", add_special_tokens=False))
                   for name, limit in request.fields)

    def _choose(self, rows: list[_Row], logits: torch.Tensor, seen: torch.Tensor) -> list[int]:
        logits = logits.cpu()
        penalty = torch.tensor([r.request.presence_penalty for r in rows])
        logits = logits - penalty[:, None] * seen
        temperature = torch.tensor([max(r.request.temperature, 1e-6) for r in rows])
        scaled = logits / temperature[:, None]
        for n, r in enumerate(rows):  # top-k before top-p, as transformers' generate orders them
            if r.request.top_k and r.request.top_k < scaled.shape[-1]:
                kth = scaled[n].topk(r.request.top_k).values[-1]
                scaled[n] = scaled[n].masked_fill(scaled[n] < kth, float("-inf"))
        probs = torch.softmax(scaled, dim=-1)
        top_p = torch.tensor([r.request.top_p for r in rows])
        if (top_p < 1).any():  # nucleus: keep the smallest set whose mass reaches top_p
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            outside = sorted_probs.cumsum(-1) - sorted_probs > top_p[:, None]
            sorted_probs[outside] = 0
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        greedy = logits.argmax(-1)
        chosen = []
        for n, r in enumerate(rows):
            if r.forced:
                chosen.append(r.forced.pop(0))
            elif r.request.temperature == 0:
                chosen.append(int(greedy[n]))
            else:
                chosen.append(int(torch.multinomial(probs[n], 1, generator=r.generator)))
        return chosen

    def _advance(self, row: _Row, token: int) -> None:
        request = row.request
        row.generated.append(token)
        if request.fields:
            self._advance_field(row, token)
            return
        if token in self.eos:
            row.done = True
            return
        row.text = self.tok.decode(row.generated, skip_special_tokens=True)
        for stop in request.stop:
            if stop in row.text:
                row.text = row.text[: row.text.index(stop)]
                row.done = True
                return
        if len(row.generated) >= request.max_tokens:
            row.done, row.finish_reason = True, "length"

    def _advance_field(self, row: _Row, token: int) -> None:
        if row.forced:  # still writing the field name
            return
        name, limit = row.request.fields[row.field]
        if len(row.generated) == row.value_start:  # the last forced token was just fed
            return
        value_tokens = row.generated[row.value_start :]
        value = self.tok.decode([t for t in value_tokens if t not in self.eos], skip_special_tokens=True)
        ended = token in self.eos or "\n" in value
        if not ended and len(value_tokens) < limit:
            return
        if not ended:
            row.finish_reason = "length"
        value = value.split("\n")[0]
        row.values.append(value)
        row.text += f"{name}:{value}\n"
        row.field += 1
        if row.field == len(row.request.fields):
            row.done = True
            return
        next_name = row.request.fields[row.field][0]
        # a value cut by the token limit still needs its line ended before the next name
        row.forced = self.tok.encode(("\n" if not ended else "") + next_name + ":", add_special_tokens=False)
        row.value_start = len(row.generated) + len(row.forced)
