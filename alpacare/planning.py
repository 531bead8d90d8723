"""What the rules (rules/*.smk) ask of the config: their input files, params and targets, as
plain functions of the config so that they can be tested without Snakemake.

No job imports this module and no rule lists it as code: editing it reruns a rule only where
the result changes, since a changed file list or param is itself what reruns a job."""

from __future__ import annotations

import itertools

from . import judge, published, selfinstruct
from .usmle.questions import is_official_layout, official_files, parse_source


def backbone_dir(name: str) -> str:
    return f"results/models/{name}"


def llm_inputs(config: dict, llm: str, key: str = "model") -> dict:
    """The model directory a local LLM needs (none for API providers), as input `key`."""
    spec = config["llms"][llm]
    return {key: backbone_dir(spec["backbone"])} if spec["provider"] == "local" else {}


def public(spec: dict) -> dict:
    """An LLM spec as params: only what changes a reply (never a secret; the price and
    concurrency settings change nothing in an artifact, so editing them reruns nothing)."""
    return {k: v for k, v in spec.items() if k in ("provider", "model", "backbone", "base_url")}


# The protocol: the project's (default) or AlpaCare's own scripts where the paper's numbers depend on them

PROTOCOLS = ("project", "alpacare")
# AlpaCare's test_generation/generation.py: transformers' max_length (prompt and output), its default
ALPACARE_MAX_LENGTH = 1024
# AlpaCare's training/train_alpaca.py (Stanford Alpaca's): added where the tokenizer has no pad token
ALPACARE_PAD_TOKEN = "[PAD]"


def protocol(config: dict) -> str:
    return config.get("protocol", "project")


def training_protocol(config: dict, model: str) -> dict:
    """What the protocol adds to a model's training settings: under AlpaCare's, a [PAD] token
    and resized embeddings for a full fine-tune (train_alpaca.py's recipe; a LoRA adapter keeps
    the backbone's vocabulary, so LoRA models are the same under both protocols)."""
    if protocol(config) == "alpacare" and config["models"][model].get("method", "full") == "full":
        return {"pad_token": ALPACARE_PAD_TOKEN}
    return {}


# Self-instruct


def selfinstruct_prompt(si: dict) -> str:
    """The generation prompt template: the config's, or the default for the prompting mode."""
    defaults = {"list": "prompts/selfinstruct/list.txt", "fields": "prompts/selfinstruct/fields.txt"}
    return si.get("prompt") or defaults[si.get("prompting", "list")]


def selfinstruct_system(si: dict) -> str | None:
    """The teacher's system prompt: list prompting only."""
    return si.get("system_prompt") if si.get("prompting") == "list" else None


def selfinstruct_files(**files) -> dict:
    """Named input files, leaving out the ones a config switched off (null) and AlpaCare's own
    prompts (alpacare-official), which the job downloads: their pins are the rule's params."""
    return {k: v for k, v in files.items() if v and v != selfinstruct.OFFICIAL}


def selfinstruct_official_pins(si: dict) -> dict:
    """The published files behind `alpacare-official` prompts: a new pin reruns generation."""
    wanted = {"prompt": (selfinstruct_prompt(si), selfinstruct.OFFICIAL_PROMPT),
              "system": (selfinstruct_system(si), selfinstruct.OFFICIAL_SYSTEM)}
    return {k: published.params(ref) for k, (value, ref) in wanted.items() if value == selfinstruct.OFFICIAL}


# Generation


def generator_plan(config: dict, name: str, testset: str) -> tuple[str, dict, dict, tuple[str, ...]]:
    """How a generator yields outputs for a test set: (kind, inputs, params, code modules)."""
    spec = config["generators"][name]
    if testset in spec.get("import", {}):
        return "import", {}, {"import_url": spec["import"][testset]}, ("stages.generate", "outputs", "io")
    llm_code = ("stages.generate", "stages.common", "outputs", "template", "data", "llm", "checkpoints", "hardware")
    if "llm" in spec:
        llm = config["llms"][spec["llm"]]
        return "chat", llm_inputs(config, spec["llm"]), {"spec": public(llm)}, llm_code
    if "model" in spec:
        model_dir = f"results/checkpoints/{spec['model']}"
    elif "backbone" in spec:
        model_dir = backbone_dir(spec["backbone"])
    else:
        model_dir = spec["path"]
    local = {"provider": "local"}
    if config["generation"]["backend"] != "transformers":
        local["backend"] = config["generation"]["backend"]
    kind = spec.get("template", "alpaca")
    plan = {"spec": local}
    if kind == "alpaca" and protocol(config) == "alpacare":
        plan["protocol"] = "alpacare"  # only here, so switching the protocol reruns only these jobs
    return kind, {"model": model_dir}, plan, llm_code


def generation_lengths(config: dict, generator: str, testset: str) -> tuple[int | None, int | None]:
    """(max_new_tokens, max_length) of a generator's job: none for imported outputs; max_length
    for local models in the Alpaca template only; under AlpaCare's protocol those generate
    as its generation.py did, to max_length 1024 with no cap of new tokens of their own."""
    kind, _, plan, _ = generator_plan(config, generator, testset)
    if kind == "import":
        return None, None
    if plan.get("protocol") == "alpacare":
        return None, ALPACARE_MAX_LENGTH
    return config["generation"]["max_new_tokens"], config["generation"].get("max_length") if kind == "alpaca" else None


def import_pin(config: dict, name: str, testset: str) -> dict:
    """An imported file's pin, as a param of its own (the job does not read it): a new checksum
    reimports (published.py is no code input)."""
    where = config["generators"][name].get("import", {}).get(testset)
    return published.params(where) if where else {}


# Judging


def judge_prompt_file(config: dict, name: str) -> dict:
    """The judge's prompt file, relative to the project: a name under prompts/judge/ or a path;
    none for AlpaCare's own prompt (alpacare-official), which the job downloads."""
    prompt = config["judges"][name]["prompt"]
    if prompt == judge.OFFICIAL:
        return {}
    return {"prompt": prompt if prompt.endswith((".yaml", ".yml")) else f"prompts/judge/{prompt}.yaml"}


def judge_official_pins(config: dict, name: str) -> dict:
    """The published files of an alpacare-official judge prompt: a new pin reruns its verdicts."""
    if config["judges"][name]["prompt"] != judge.OFFICIAL:
        return {}
    provider = config["llms"][config["judges"][name]["llm"]]["provider"]
    return {role: published.params(ref) for role, ref in judge.official_refs(provider).items()}


def judge_settings(config: dict, name: str) -> dict:
    """Exactly what changes a judge's verdicts (a reply judge's tie margin and a log-prob
    judge's re-asks change nothing, so editing them reruns nothing); under AlpaCare's protocol
    a reply judge scores by AlpaCare's rule and re-asks nothing (a log-prob judge, which
    AlpaCare did not have, is the same under both)."""
    spec = config["judges"][name]
    keep = ("method", "max_tokens", "reasks") if spec["method"] == "reply" else ("method", "tie_margin")
    settings = {k: spec[k] for k in keep}
    if spec["method"] == "reply" and protocol(config) == "alpacare":
        # AlpaCare's evaluation/evaulation.py: its exact rule, and nothing asked again
        settings.update(reasks=0, scoring="alpacare")
    return settings


# Results


def figure_cells(spec: dict) -> list[tuple[str, str, str, str]]:
    """The (judge, reference, test set, model) cells of a paper figure (`figures:` entry)."""
    return list(itertools.product(spec["judges"], spec["references"], spec["testsets"], spec["models"]))


def cell_outputs(cells) -> list[tuple[str, str]]:
    """The output files (generator, test set) that the cells compare."""
    return list(dict.fromkeys((g, t) for _, reference, t, model in cells for g in (model, reference)))


def public_inputs(config: dict, testsets, outputs, judges=()) -> dict:
    """What each public input the compared cells read is pinned to: the test sets, the
    (generator, test set) outputs imported from a URL or a published file, the official prompt
    files of these `judges` and, where the config generates its own data, the official seeds
    and teacher prompts (every file a job downloads, for the replay bundle's manifest)."""
    from .seeds import is_official, published_ref

    official = {f"judges.{j}.{role}": pin for j in judges for role, pin in judge_official_pins(config, j).items()}
    if "selfinstruct" in config:
        official |= {f"seeds.{s}": published.params(published_ref(s)) for s in config.get("seeds", []) if is_official(s)}
        official |= {f"selfinstruct.{k}": pin for k, pin in selfinstruct_official_pins(config["selfinstruct"]).items()}
    pins = {f"testsets.{t}": published.params(config["testsets"][t]["url"])
            for t in testsets if "url" in config["testsets"][t]}
    for g, t in outputs:
        where = config["generators"][g].get("import", {}).get(t)
        if where:
            pins[f"generators.{g}.import.{t}"] = published.params(where)
    return pins | official


def stats_targets(config: dict) -> list[str]:
    """The statistics tables of each dataset under stats.datasets, and the dataset card of
    each self-instructed one."""
    out = []
    for name in config.get("stats", {}).get("datasets", []):
        out += [f"results/stats/{name}/table.md", f"results/stats/{name}/verbs.md"]
        if config["datasets"][name].get("source") == "selfinstruct":
            out.append(f"results/data/{name}.card.md")
    return out


# USMLE


def usmle_source_files(usmle: dict) -> list[str]:
    """The project files a local questions source reads (none for a URL or the hub)."""
    kind, path = parse_source(usmle["questions"]["source"])
    if kind != "path":
        return []
    return [f"{path}/{name}" for name in official_files()] if is_official_layout(path) else [path]


def usmle_model(config: dict, generator: str) -> tuple[dict, dict]:
    """(inputs, spec) of a generator that answers: its model directory and, for an LLM, the
    public part of its spec (the provider and model; never a key or a price)."""
    spec = config["generators"][generator]
    if "model" in spec:
        return {"model": f"results/checkpoints/{spec['model']}"}, {"provider": "local"}
    if "backbone" in spec:
        return {"model": backbone_dir(spec["backbone"])}, {"provider": "local"}
    return llm_inputs(config, spec["llm"]), public(config["llms"][spec["llm"]])


def usmle_setting(usmle: dict, method: str, key: str):
    """A setting of one answering method, or the usmle section's own."""
    return usmle["methods"][method].get(key, usmle.get(key))
