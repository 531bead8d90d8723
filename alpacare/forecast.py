"""Know the bill before paying it: the calls, tokens and cost of a config's planned LLM jobs,
per stage and endpoint.

    python -m alpacare.forecast --configfile configs/paper.yaml [--testset-file NAME=PATH ...]

A job counts as planned when its artifact is missing (as Snakemake would decide on a first
run). Prompts are built as the stages build them where their inputs exist: the teacher's
exactly (selfinstruct.build_requests), generations from the test sets' rows, judgments from
the outputs once they exist. Where an input does not exist yet, its size is bounded: a
response prompt by the seeds' longest, an output to judge by generation.max_new_tokens.
Output tokens: `max_tokens` per call (an upper bound) and, where the cache has replies of the
same model and max_tokens, their mean ("expected"). Calls the cache answers are free.
Tokens are counted with tiktoken for OpenAI models when its encoding files are available,
else estimated at 4 characters a token; the `tokens` column says which.

A second table lists the GPU time each planned training and generation job asks SLURM for
(alpacare.cluster's requests: GPUs x the runtime limit of a first attempt), so the bill covers
the cluster too. Each stage adds its rows through `add` (API) or `add_gpu` (cluster).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


from . import data, judge, selfinstruct
from .config import compared_outputs, load, verdict_cells
from .io import read_jsonl, read_records
from .ledger import cost_usd
from .llm import Request, make_provider
from .llm.cache import Cache, cache_key, legacy_cache_key, locations
from .published import PublishedError, fetch
from .testsets import normalize_testset

# Published test sets whose rows the forecast knows without downloading them (offline): the row
# count and the mean characters of what a row asks (instruction and input as the paper configs
# join them), measured on the pinned files (AlpacaFarm's on the same 805 instructions in
# AlpaCare's released alpaca_eval outputs).
PINNED_TESTSETS = {
    "alpacare:data/MedInstruct-test.jsonl": (216, 159),
    "alpacare:data/reference_outputs/gpt-4/iCliniq_output.jsonl": (1000, 591),
    "alpaca_eval:results/text_davinci_003/model_outputs.json": (805, 165),
}

CHAT_OVERHEAD = (4, 3)  # tokens per message, and to prime the reply (OpenAI's chat format)


class Counter:
    """Tokens of a text for one model: tiktoken's encoding where it loads, else an estimate."""

    def __init__(self, provider: str, model: str):
        self.encoding = None
        if provider == "openai":
            try:
                import tiktoken

                self.encoding = tiktoken.encoding_for_model(model)
            except Exception:  # unknown model, or the encoding files cannot be fetched here
                self.encoding = None
        self.method = "tiktoken" if self.encoding else "estimate"

    def text(self, text: str) -> int:
        return len(self.encoding.encode(text, disallowed_special=())) if self.encoding else len(text) // 4 + 1

    def request(self, request: Request) -> int:
        if request.messages is None:
            return self.text(request.prompt)
        per_message, priming = CHAT_OVERHEAD
        return sum(self.text(c) + per_message for _, c in request.messages) + priming


@dataclass
class Row:
    stage: str
    endpoint: str
    model: str
    jobs: int = 0
    calls: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens_max: int = 0
    output_tokens_expected: int = 0
    cost_max_usd: float = 0.0
    cost_expected_usd: float = 0.0
    tokens: str = ""
    inputs: str = "exact"


@dataclass
class GpuRow:
    """One planned cluster job: what it asks SLURM for on its first attempt."""
    stage: str
    job: str
    gpus: int
    hours: float
    gpu_hours: float


class Forecast:
    def __init__(self, config: dict, root: Path, testset_files: dict[str, str]):
        self.config, self.root, self.testset_files = config, root, testset_files
        self.rows: dict[tuple[str, str], Row] = {}
        self.gpu_rows: list[GpuRow] = []
        self.notes: list[str] = []
        self._testsets: dict[str, tuple[list[dict] | None, str]] = {}
        cache = config["llm"].get("cache")
        self.cache = Cache(root / cache) if cache and any(p.exists() for p in locations(root / cache)) else None
        self._history: dict[tuple, float] | None = None
        self._counters: dict[str, Counter] = {}
        self._identity: dict[str, tuple] = {}

    # --- helpers ----------------------------------------------------------------------

    def missing(self, artifact: str) -> bool:
        return not (self.root / artifact).exists()

    def counter(self, llm: str) -> Counter:
        spec = self.config["llms"][llm]
        if llm not in self._counters:
            self._counters[llm] = Counter(spec["provider"], spec.get("model", ""))
        return self._counters[llm]

    def is_cached(self, llm: str, request: Request) -> bool:
        spec = self.config["llms"][llm]
        if self.cache is None or spec["provider"] == "local":
            return False
        if llm not in self._identity:
            provider = make_provider(spec)
            self._identity[llm] = (provider.name, provider.identity(), provider.legacy_identity())
        name, identity, legacy = self._identity[llm]
        if self.cache.get(cache_key(name, identity, request.as_dict())) is not None:
            return True
        return self.cache.get(legacy_cache_key(name, legacy, request.as_dict())) is not None  # stored before canonical keys

    def expected_output(self, model: str, max_tokens: int) -> float:
        """Mean output tokens of cached replies of this model at this max_tokens, else the bound."""
        if self._history is None:  # one pass over the cache, on first use
            sums: dict[tuple, list] = {}
            for _, request, response in self.cache.records() if self.cache is not None else ():
                total = sums.setdefault((request.get("model"), request.get("max_tokens")), [0, 0])
                total[0] += response.get("output_tokens") or 0
                total[1] += 1
            self._history = {k: t / n for k, (t, n) in sums.items()}
        return self._history.get((model, max_tokens), max_tokens)

    def add(self, stage: str, llm: str, requests: list[Request], *, jobs: int = 1, extra_input: int = 0,
            inputs: str = "exact", check_cache: bool = True) -> None:
        spec = self.config["llms"][llm]
        row = self.rows.setdefault((stage, llm), Row(stage, llm, spec.get("model", spec.get("backbone", ""))))
        row.jobs += jobs
        counter = self.counter(llm)
        row.tokens = counter.method if spec["provider"] != "local" else "local (free)"
        if inputs != "exact":
            row.inputs = inputs
        price = spec.get("price", {}) if spec["provider"] != "local" else {}
        for request in requests:
            row.calls += 1
            if check_cache and self.is_cached(llm, request):
                row.cached += 1
                continue
            tokens_in = counter.request(request) + extra_input
            out_max = request.max_tokens if not request.fields else sum(n for _, n in request.fields)
            out_expected = self.expected_output(request.model, request.max_tokens) if not request.fields else out_max
            row.input_tokens += tokens_in
            row.output_tokens_max += out_max
            row.output_tokens_expected += round(out_expected)
            row.cost_max_usd += cost_usd(price, tokens_in, out_max)
            row.cost_expected_usd += cost_usd(price, tokens_in, out_expected)

    def testset_rows(self, name: str) -> list[dict] | None:
        return self.testset(name)[0]

    def testset(self, name: str) -> tuple[list[dict] | None, str]:
        """(rows, how they were known: 'exact' or an estimate), once per test set."""
        if name not in self._testsets:
            self._testsets[name] = self._load_testset(name)
        return self._testsets[name]

    def _load_testset(self, name: str) -> tuple[list[dict] | None, str]:
        spec = self.config["testsets"][name]
        normalized = self.root / f"results/testsets/{name}.jsonl"
        if normalized.exists():
            return read_jsonl(normalized), "exact"
        how = {k: spec[k] for k in ("fields", "instruction", "match") if k in spec}
        path = self.testset_files.get(name) or spec.get("path")
        if path:
            return normalize_testset(read_records(self.root / path), path, spec.get("limit"), **how), "exact"
        url = spec.get("url")
        if url:
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    fetch(url, Path(tmp) / "rows")   # checked against its pin, as the testset job checks it
                    return normalize_testset(read_records(Path(tmp) / "rows"), url, spec.get("limit"), **how), "exact"
            except (PublishedError, OSError, ValueError) as err:
                if url in PINNED_TESTSETS:
                    count, chars = PINNED_TESTSETS[url]
                    count = min(count, spec.get("limit") or count)
                    self.notes.append(f"test set {name!r} could not be fetched ({err}): its pinned size stands in "
                                      f"({count} rows of {chars} characters on average)")
                    rows = [{"id": n, "instruction": "x" * chars, "input": ""} for n in range(count)]
                    return rows, "estimate: test set rows from its pinned size"
                reason = f"could not be fetched ({err})"
        else:
            reason = "is a hub dataset"
        self.notes.append(f"test set {name!r} {reason}: its calls are not counted; pass --testset-file "
                          f"{name}=PATH or run `snakemake results/testsets/{name}.jsonl` first")
        return None, ""

    def model_id(self, llm: str) -> str:
        spec = self.config["llms"][llm]
        return spec["model"] if spec["provider"] != "local" else f"results/models/{spec['backbone']}"

    # --- stages -----------------------------------------------------------------------

    def selfinstruct(self) -> None:
        si = self.config.get("selfinstruct")
        if not si:
            return
        from .seeds import load_seeds

        seed_files = [s for s in self.config["seeds"] if (self.root / s).is_file()]
        if not self.missing("results/selfinstruct/seeds.jsonl"):
            seeds = read_jsonl(self.root / "results/selfinstruct/seeds.jsonl")
        elif seed_files:
            seeds = load_seeds([str(self.root / s) for s in seed_files])
        else:  # named seed sets are downloaded by the seeds rule; the project's seeds stand in for their lengths
            seeds = load_seeds([str(self.root / "seeds/medical_seed_tasks.json")])
        teacher, responder = si["teacher"], si["responder"]
        prompting = si["prompting"]
        local = lambda f: f if f in (None, selfinstruct.OFFICIAL) else str(self.root / f)  # noqa: E731
        prompt, system = si.get("prompt") or selfinstruct.DEFAULT_PROMPT[prompting], si.get("system_prompt")
        try:
            prompts, inputs = selfinstruct.generation_prompts(local(prompt), local(system), prompting), "exact"
        except PublishedError:  # AlpaCare's own prompts cannot be fetched here: the project's paraphrases stand in
            prompts = selfinstruct.generation_prompts(local(selfinstruct.DEFAULT_PROMPT[prompting]),
                                                      local("prompts/selfinstruct/teacher_system.txt"), prompting)
            inputs = "estimate: offline, the project's paraphrase stands in for alpacare-official"
        if self.missing("results/selfinstruct/tasks.raw.jsonl"):
            tagged = selfinstruct.build_requests(
                seeds, model=self.model_id(teacher), prompting=prompting, run_seed=self.config["run_seed"],
                requests=si["requests"], examples_per_request=si["examples_per_request"],
                tasks_per_request=si["tasks_per_request"], sampling=dict(si["sampling"]), template=prompts["template"],
                system=prompts["system"], layout=prompts["layout"])
            self.add("generate_tasks", teacher, [r for _, r in tagged], inputs=inputs)
        if self.missing("results/selfinstruct/responses.jsonl"):
            sampling = dict(si["response_sampling"])
            model = self.model_id(responder)
            responder_system = (selfinstruct.read_prompt(self.root / si["responder_system_prompt"])
                                if si.get("responder_system_prompt") else None)
            tasks_path = self.root / "results/selfinstruct/tasks.jsonl"
            if tasks_path.exists():
                tasks, inputs = read_jsonl(tasks_path), "exact"
            else:  # every candidate task survives (an upper bound), each as long as the longest seed
                longest = max(seeds, key=lambda t: len(data.user_message(t["instruction"], t["input"])))
                tasks = [longest] * (si["requests"] * si["tasks_per_request"])
                inputs = "bound: all candidate tasks, longest seed"
            requests = [selfinstruct.response_request(model, t, run_seed=self.config["run_seed"], system=responder_system,
                                                      sampling=sampling) for t in tasks]
            self.add("respond", responder, requests, inputs=inputs, check_cache=tasks_path.exists())

    def generate(self) -> None:
        max_new = self.config["generation"]["max_new_tokens"]
        for generator, testset in compared_outputs(self.config):
            spec = self.config["generators"][generator]
            if "llm" not in spec or testset in spec.get("import", {}) \
                    or not self.missing(f"results/outputs/{generator}/{testset}.json"):
                continue
            rows, known = self.testset(testset)
            if rows is None:
                continue
            model = self.model_id(spec["llm"])
            requests = [Request.chat(model, data.user_message(t["instruction"], t["input"]), max_tokens=max_new)
                        for t in rows]
            self.add("generate", spec["llm"], requests, inputs=known, check_cache=known == "exact")

    def judge(self) -> None:
        max_new = self.config["generation"]["max_new_tokens"]
        for judge_name, reference, testset, model in verdict_cells(self.config):
            spec = self.config["judges"][judge_name]
            llm = spec["llm"]
            if not self.missing(f"results/verdicts/{judge_name}/{reference}/{testset}/{model}.jsonl"):
                continue
            outputs = [self.root / f"results/outputs/{g}/{testset}.json" for g in (model, reference)]
            judge_model = self.model_id(llm)
            if all(p.exists() for p in outputs):
                model_out, ref_out = (json.loads(p.read_text()) for p in outputs)
                tagged = judge.build_requests(model_out, ref_out, judge_model=judge_model, method=spec["method"],
                                              max_tokens=spec["max_tokens"])
                self.add("judge", llm, [r for _, r in tagged])
                continue
            rows, known = self.testset(testset)
            if rows is None:
                continue
            # outputs not generated yet: the prompt with empty outputs, plus two outputs of
            # at most max_new_tokens each (an upper bound)
            placeholder = [{"id": t["id"], "instruction": t["instruction"], "input": t["input"], "output": ""}
                           for t in rows]
            tagged = judge.build_requests(placeholder, placeholder, judge_model=judge_model, method=spec["method"],
                                          max_tokens=spec["max_tokens"])
            bound = f"bound: outputs of {max_new} tokens" + ("" if known == "exact" else f"; {known.split(': ', 1)[1]}")
            self.add("judge", llm, [r for _, r in tagged], extra_input=2 * max_new, inputs=bound, check_cache=False)

    def add_gpu(self, stage: str, job: str, resources: dict) -> None:
        hours = resources["runtime"] / 60
        self.gpu_rows.append(GpuRow(stage, job, resources["gpu"], round(hours, 2), round(hours * resources["gpu"], 2)))

    def cluster_jobs(self) -> None:
        """Every planned training and local generation job (outputs to judge, USMLE answers):
        the GPUs and hours alpacare.cluster asks SLURM for."""
        from . import cluster
        from .usmle.plan import generators_by_method

        for model in self.config["models"]:
            if self.missing(f"results/checkpoints/{model}") and self.trains(model):
                self.add_gpu("finetune", model, cluster.finetune_resources(self.config, model))
        jobs = [("generate", g, t, f"results/outputs/{g}/{t}.json") for g, t in compared_outputs(self.config)]
        for method, generators in generators_by_method(self.config).items():
            jobs += [(f"usmle_{method}", g, "usmle", f"results/usmle/{method}/{g}.jsonl") for g in generators]
        for stage, generator, testset, artifact in jobs:
            spec = self.config["generators"][generator]
            backbone = cluster.generator_backbone(self.config, generator)
            if testset in spec.get("import", {}) or backbone is None or not self.missing(artifact):
                continue
            self.add_gpu(stage, f"{generator} / {testset}", cluster.job_resources(self.config, "generate", backbone))

    def trains(self, model: str) -> bool:
        """Whether a model is trained for a planned job: it answers a judged cell or the USMLE."""
        from .usmle.plan import generators_by_method

        wanted = {g for g, _ in compared_outputs(self.config)}
        wanted |= {g for gs in generators_by_method(self.config).values() for g in gs}
        return any(self.config["generators"][g].get("model") == model for g in wanted)

    def judge_validation(self) -> None:
        """Each validated judge on the people's pairs, both orders (README: Judges against people):
        exact once the file is here (results/judges/crossannotations.json or a local path), else
        the file's 648 pairs (or the limit) at the AlpacaFarm outputs' typical length."""
        from . import crossannotations as ca, judgevalidation as jv

        judges = jv.validated_judges(self.config)
        section = self.config.get("judge_validation") or {}
        source = ca.source_params(section) if judges else {}
        # the file this config names: its local path, or the downloaded copy if it has the pinned checksum
        downloaded = self.root / "results/judges/crossannotations.json"
        found = self.root / source["path"] if "path" in source else downloaded
        if not found.exists() or ("path" not in source and not (
                source.get("sha256") and hashlib.sha256(found.read_bytes()).hexdigest() == source["sha256"])):
            found = None
        pair_list = ca.pairs(json.loads(found.read_text()), section.get("limit")) if found else None
        for name in judges:
            if not self.missing(f"results/judges/{name}/validation.verdicts.jsonl"):
                continue
            spec, llm = self.config["judges"][name], self.config["judges"][name]["llm"]
            inputs = "exact"
            try:
                prompt = judge.resolve_prompt(spec.get("prompt", judge.DEFAULT_PROMPT), self.config["llms"][llm]["provider"])
            except PublishedError:  # AlpaCare's prompt cannot be fetched here: the project's own stands in
                prompt, inputs = None, "estimate: offline, the pairwise prompt stands in for alpacare-official"
            if pair_list is not None:
                first, second = ca.as_outputs(pair_list)
                tagged = judge.build_requests(second, first, judge_model=self.model_id(llm), method=spec["method"],
                                              max_tokens=spec["max_tokens"], prompt=prompt)
                self.add("judge_validation", llm, [r for _, r in tagged], inputs=inputs)
                continue
            n = min(section.get("limit") or ca.FULL_PAIRS, ca.FULL_PAIRS)
            chars = ca.ESTIMATED_PAIR_CHARS
            placeholder = [{"id": f"pair-{i}", "instruction": "", "input": "", "output": ""} for i in range(n)]
            tagged = judge.build_requests(placeholder, placeholder, judge_model=self.model_id(llm), method=spec["method"],
                                          max_tokens=spec["max_tokens"], prompt=prompt)
            self.add("judge_validation", llm, [r for _, r in tagged],
                     extra_input=(chars["instruction"] + 2 * chars["output"]) // 4, check_cache=False,
                     inputs=f"estimate: {n} pairs of {chars['instruction'] + 2 * chars['output']} characters (the file is not here)")

    def run(self) -> list[Row]:
        self.selfinstruct()
        self.generate()
        self.judge()
        self.judge_validation()
        self.cluster_jobs()
        return list(self.rows.values())


COLUMNS = ("stage", "endpoint", "model", "jobs", "calls", "cached", "input_tokens", "output_tokens_max",
           "output_tokens_expected", "cost_max_usd", "cost_expected_usd", "tokens", "inputs")


def table(rows: list[Row]) -> str:
    total = Row("total", "", "", *[sum(getattr(r, c) for r in rows) for c in COLUMNS[3:11]], tokens="", inputs="")
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in [*rows, total]:
        cells = []
        for c in COLUMNS:
            v = getattr(r, c)
            cells.append(f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


GPU_COLUMNS = ("stage", "jobs", "gpus", "hours", "gpu_hours")


def gpu_table(rows: list[GpuRow]) -> str:
    """The cluster's bill, a row per stage: jobs, GPUs per job (the range), hours asked per job
    (the range) and GPU-hours in all (first attempts; a retry asks for more)."""
    lines = ["| " + " | ".join(GPU_COLUMNS) + " |", "|" + "---|" * len(GPU_COLUMNS)]
    spread = lambda values: f"{min(values):g}" if min(values) == max(values) else f"{min(values):g}-{max(values):g}"  # noqa: E731
    for stage in dict.fromkeys(r.stage for r in rows):
        group = [r for r in rows if r.stage == stage]
        lines.append(f"| {stage} | {len(group)} | {spread([r.gpus for r in group])} | {spread([r.hours for r in group])} | "
                     f"{sum(r.gpu_hours for r in group):,.1f} |")
    lines.append(f"| total | {len(rows)} |  |  | {sum(r.gpu_hours for r in rows):,.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alpacare.forecast", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", default="config.yaml")
    parser.add_argument("--directory", default=".", help="the project directory (results/, the cache)")
    parser.add_argument("--testset-file", action="append", default=[], metavar="NAME=PATH",
                        help="a local copy of a test set that is otherwise downloaded (to count its rows)")
    parser.add_argument("--json", action="store_true", help="rows as JSON instead of a Markdown table")
    args = parser.parse_args(argv)
    root = Path(args.directory)
    config = load(args.configfile, root)
    files = dict(item.split("=", 1) for item in args.testset_file)
    forecast = Forecast(config, root, files)
    rows = forecast.run()
    if args.json:
        print(json.dumps({"api": [r.__dict__ for r in rows], "gpu": [r.__dict__ for r in forecast.gpu_rows]}, indent=1))
    else:
        sys.stdout.write(table(rows))
        if forecast.gpu_rows:
            sys.stdout.write("\nGPU time the planned cluster jobs ask SLURM for (first attempts):\n\n")
            sys.stdout.write(gpu_table(forecast.gpu_rows))
    for note in dict.fromkeys(forecast.notes):   # once each, though every cell of a test set met it
        print(f"note: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
