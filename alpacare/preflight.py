"""Checks run when Snakemake reads the workflow, before any job: the local seed and test-set
files (format, encoding, required fields; each error names the file and row) and the API
keys of the endpoints the planned jobs will call. A problem found here costs nothing; found
inside a job, it comes after other jobs have already paid for calls."""

from __future__ import annotations

import os
from pathlib import Path

from .config import compared_outputs, verdict_cells
from .io import read_records


class PreflightError(ValueError):
    pass


def check(config: dict, source: str = "config", *, keys: bool = True, root: str | Path = ".") -> None:
    """Raise PreflightError naming the first problem. keys=False skips the key check (a dry run)."""
    root = Path(root)
    check_seeds(config, root)
    check_testsets(config, root)
    if keys:
        check_keys(config, source, root)
    check_budget(config, source)


def check_seeds(config: dict, root: Path) -> None:
    from .seeds import load_seeds

    # only local files: a seed entry may also name a published set that a job downloads
    files = [s for s in config.get("seeds", []) if (root / s).is_file()]
    for f in files:
        try:
            load_seeds([str(root / f)])
        except UnicodeDecodeError as err:
            raise PreflightError(f"{f}: not UTF-8 text (byte {err.start}: {err.reason})") from None
        except ValueError as err:
            raise PreflightError(str(err).replace(str(root / f), f, 1)) from None


def check_testsets(config: dict, root: Path) -> None:
    from .testsets import normalize_testset

    for name, spec in config.get("testsets", {}).items():
        if "path" not in spec:
            continue
        path = root / spec["path"]
        if not path.is_file():
            raise PreflightError(f"testsets.{name}.path: {spec['path']}: file not found")
        try:
            normalize_testset(read_records(path), spec["path"], spec.get("limit"))
        except ValueError as err:
            raise PreflightError(f"testsets.{name}: {str(err).replace(str(path), spec['path'])}") from None


def planned_endpoints(config: dict, root: Path = Path(".")) -> dict[str, list[str]]:
    """llms name -> the jobs that will call it: every LLM stage whose artifact is missing."""
    plan: dict[str, list[str]] = {}

    def need(llm: str | None, job: str, artifact: str) -> None:
        if llm in config.get("llms", {}) and not (root / artifact).exists():
            plan.setdefault(llm, []).append(job)

    si = config.get("selfinstruct")
    if si:
        need(si.get("teacher"), "generate_tasks", "results/selfinstruct/tasks.raw.jsonl")
        need(si.get("responder"), "respond", "results/selfinstruct/responses.jsonl")
    for generator, testset in compared_outputs(config):
        spec = config.get("generators", {}).get(generator, {})
        if "llm" in spec and testset not in spec.get("import", {}):
            need(spec["llm"], f"generate {generator}/{testset}", f"results/outputs/{generator}/{testset}.json")
    for judge, reference, testset, model in verdict_cells(config):
        llm = config.get("judges", {}).get(judge, {}).get("llm")
        need(llm, f"judge {judge}", f"results/verdicts/{judge}/{reference}/{testset}/{model}.jsonl")
    usmle = config.get("usmle")
    if isinstance(usmle, dict):  # any LLM the USMLE section names (its layout is that stage's own)
        for value in usmle.values():
            for name in value if isinstance(value, list) else [value]:
                if isinstance(name, str) and name in config.get("llms", {}):
                    plan.setdefault(name, []).append("usmle")
    return plan


def job_endpoints(config: dict, jobs) -> dict[str, list[str]]:
    """llms name -> the jobs that call it, for Snakemake's planned jobs [(rule, wildcards)]."""
    plan: dict[str, list[str]] = {}
    llms = config.get("llms", {})
    si = config.get("selfinstruct", {})
    for rule, w in jobs:
        if rule == "generate_tasks":
            llm = si.get("teacher")
        elif rule == "respond":
            llm = si.get("responder")
        elif rule in ("generate", "generate_api"):
            spec = config.get("generators", {}).get(w.get("generator"), {})
            llm = spec.get("llm") if w.get("testset") not in spec.get("import", {}) else None
        elif rule in ("judge", "judge_api", "judge_validation_verdicts", "judge_validation_verdicts_api"):
            llm = config.get("judges", {}).get(w.get("judge"), {}).get("llm")
        elif rule.startswith("usmle") and "generator" in w:
            llm = config.get("generators", {}).get(w["generator"], {}).get("llm")
        else:
            llm = None
        if llm in llms:
            shown = "/".join(str(v) for v in w.values())
            plan.setdefault(llm, []).append(f"{rule} {shown}".strip())
    return plan


def check_keys(config: dict, source: str = "config", root: str | Path = ".", jobs=None) -> None:
    """Every planned job's endpoint has its key (none needed in replay-only mode). jobs:
    Snakemake's planned jobs as [(rule, wildcards dict)]; without them, every LLM stage
    whose artifact is missing counts as planned."""
    if config.get("llm", {}).get("replay_only", False):
        return
    root = Path(root)
    plan = planned_endpoints(config, root) if jobs is None else job_endpoints(config, jobs)
    from .llm.anthropic_api import AnthropicProvider
    from .llm.openai_api import OpenAIProvider

    defaults = {"openai": OpenAIProvider.default_key_env, "anthropic": AnthropicProvider.default_key_env}
    for llm, jobs in plan.items():
        spec = config["llms"][llm]
        if spec["provider"] not in defaults or spec.get("keyless"):
            continue
        env = spec.get("api_key_env") or defaults[spec["provider"]]
        if not os.environ.get(env):
            shown = ", ".join(list(dict.fromkeys(jobs))[:5]) + (f" and {len(jobs) - 5} more" if len(jobs) > 5 else "")
            hint = " If the server at base_url takes no key, set `keyless: true` on it." if spec.get("base_url") else ""
            raise PreflightError(f"{source}: 'llms.{llm}' needs an API key in the environment variable {env} "
                                 f"(planned jobs call it: {shown}).{hint} Reviewers without keys: set "
                                 "llm.replay_only: true to answer from the cache only.")


def check_budget(config: dict, source: str) -> None:
    if config.get("llm", {}).get("budget_usd") is None:
        return
    for name, spec in config.get("llms", {}).items():
        if spec["provider"] != "local" and "price" not in spec and not spec.get("keyless"):
            raise PreflightError(f"{source}: llm.budget_usd is set, but 'llms.{name}' has no price: "
                                 "its calls could not be counted against the budget")
