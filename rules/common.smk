# Config validation and the helpers the rules share. Functions live here, in rules/cluster.smk
# and (plain logic of the config) in alpacare/planning.py; rules in the other files, so that each
# reads as its steps. `snakemake --lint` takes a file holding a def and the word rule followed by
# a space and, later on that line, a colon, for one mixing the two: helper files avoid that text.
import os
import re
from pathlib import Path

import alpacare
from alpacare import partitions, planning, published
from alpacare.config import resolve_extends, type_command_line, validate
from alpacare.preflight import check as preflight, check_keys as preflight_keys

# Every job imports the alpacare package this workflow imported (the code its `code` inputs
# track), whatever environment runs it: a conda env holds only third-party packages, never a
# copy of alpacare that could be another checkout's or an older version. SLURM jobs inherit the
# variable (sbatch exports the environment) and set it again when they parse this file. Set,
# not required: the `envvars:` directive that the linter suggests for it would demand it of the user.
_OURS = str(Path(alpacare.__file__).parent.parent)
_THEIRS = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
os.environ.update(PYTHONPATH=os.pathsep.join(dict.fromkeys([_OURS, *_THEIRS])))

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


def slurm_jobs():
    """The planned jobs the SLURM executor would submit, with what each asks for."""
    jobs = []
    for job in workflow.dag.needrun_jobs():
        if job.is_local or job.is_norun:
            continue
        wildcards = ", ".join(f"{k}={v}" for k, v in job.wildcards.items())
        r = job.resources
        jobs.append(
            partitions.Job(
                f"rule {job.rule.name}" + (f" ({wildcards})" if wildcards else ""),
                job.rule.name,
                job.threads,
                r.get("mem_mb") or 0,
                r.get("runtime") or 0,
                r.get("gpu") or 0,
                r.get("gpu_model"),
                r.get("slurm_partition"),
            )
        )
    return jobs


onstart:
    preflight_keys(config, source=CONFIG_SOURCE, jobs=planned_jobs())
    # a job no node can run would sit in the queue forever: stop before submitting anything
    if getattr(workflow.executor_plugin, "name", None) == "slurm":
        partitions.check(slurm_jobs(), qos=config["cluster"].get("qos"))


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


# Modules a package name does not stand for: they run in LLM jobs but never change an artifact
# (the cache stores and returns replies verbatim; the breaker only decides when a job stops),
# so editing them reruns nothing. alpacare/ledger.py and alpacare/shards.py are in no list.
NEVER_DECIDE = {"llm/cache.py", "llm/breaker.py"}


def code(*modules):
    """The package files that decide a rule's output, as dotted module names under alpacare
    ("stages.judge", "judge"); a package name ("llm", "checkpoints") stands for all of its modules
    but NEVER_DECIDE. Editing one reruns the rule (Snakemake itself only tracks the rule's own
    script); list exactly what the rule runs, so that an edit elsewhere reruns nothing."""
    root = Path(alpacare.__file__).parent
    files = []
    for m in modules:
        path = root.joinpath(*m.split("."))
        if path.is_dir():
            files += sorted(str(p) for p in path.glob("*.py") if p.relative_to(root).as_posix() not in NEVER_DECIDE)
        else:
            files.append(str(path.with_suffix(".py")))
    return files


def bundle_results():
    """Every table and figure the report, figure and leaderboard rules write for this config."""
    if not VERDICTS:
        return []
    files = [str(f) for f in rules.report.output]
    files += [str(f).format(figure=name) for name in FIGURES for f in rules.figure.output]
    files += [str(f).format(judge=j, reference=r, testset=t) for j, r, t in BOARDS for f in rules.leaderboard.output]
    return files
