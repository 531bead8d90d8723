# Config validation and the helpers the rules share.
import re
from pathlib import Path

import alpacare
from alpacare import published
from alpacare.config import resolve_extends, type_command_line, validate
from alpacare.preflight import check as preflight, check_keys as preflight_keys

CONFIG_SOURCE = ", ".join(map(str, workflow.configfiles)) or "config"
type_command_line(config, workflow.config_settings.config)
# in place: Snakemake's `config` is this very dict
_resolved = dict(resolve_extends(config, CONFIG_SOURCE))
config.clear()
config.update(_resolved)
validate(config, source=CONFIG_SOURCE)
# the local seed and test-set files now; the planned jobs' API keys once the run starts
# (onstart: after the DAG, before any job; not on a dry run, which needs no key)
preflight(config, source=CONFIG_SOURCE, keys=False)


def planned_jobs():
    try:  # Snakemake's own plan; None falls back to "every LLM stage whose output is missing"
        return [(job.rule.name, dict(job.wildcards)) for job in workflow.dag.needrun_jobs()]
    except AttributeError:
        return None


onstart:
    preflight_keys(config, source=CONFIG_SOURCE, jobs=planned_jobs())


# threads for jobs that run a model; snakemake caps them at --cores on a small machine
TORCH_THREADS = 4


def names(section):
    """A wildcard constraint matching exactly the names defined in a config section."""
    return "|".join(re.escape(n) for n in sorted(config[section])) or "(?!)"


wildcard_constraints:
    backbone=names("backbones"),
    dataset=names("datasets"),
    model=names("models"),
    testset=names("testsets"),
    generator=names("generators"),
    reference=names("generators"),
    judge=names("judges"),


def backbone_dir(name):
    return f"results/models/{name}"


def llm_inputs(llm_name, key="model"):
    """The model directory a local LLM needs (none for API providers), as input `key`."""
    spec = config["llms"][llm_name]
    return {key: backbone_dir(spec["backbone"])} if spec["provider"] == "local" else {}


def public(spec):
    """An LLM spec as rule params: only what changes a reply (never a secret; the price and
    concurrency settings change nothing in an artifact, so editing them reruns nothing)."""
    return {k: v for k, v in spec.items() if k in ("provider", "model", "backbone", "base_url")}


def code(*modules):
    """The package files that decide a rule's output, as dotted module names under alpacare
    ("stages.judge", "judge"); a package name ("llm", "checkpoints") stands for all of its modules. Editing
    one reruns the rule (Snakemake itself only tracks the rule's own script); list exactly
    what the rule runs, so that an edit elsewhere reruns nothing."""
    root = Path(alpacare.__file__).parent
    files = []
    for m in modules:
        path = root.joinpath(*m.split("."))
        files += sorted(map(str, path.glob("*.py"))) if path.is_dir() else [str(path.with_suffix(".py"))]
    return files
