# Where each job runs and what it asks of SLURM: helpers only, as in rules/common.smk.
# alpacare/cluster.py decides from the config; the `cluster:` block holds everything
# site-specific, so no rule names a site.
#
# Two kinds of rules. Those that run a model here (fine-tuning, local generation and judging, a
# local teacher or responder) go to SLURM with `threads:` and `resources: **...` from the helpers
# below. Those that only call an HTTP API or do bookkeeping are `localrule: True`: they run on
# the submit host, which has the internet. Snakemake makes whole rules local, not single jobs,
# so those serving both kinds (generate, judge) exist twice: the original takes the names that
# run a local model (a wildcard constraint), and `use rule X as X_api` takes the rest.
from alpacare import cluster as placement

# conda environments for --software-deployment-method conda (paths relative to rules/)
ENVS = {kind: f"../envs/{kind}.yaml" for kind in ("api", "train", "report")}


def names_running(section, local_model=True, among=None):
    """A wildcard constraint: the names under `section` (generators, judges), or those of them
    `among` lists, whose jobs run a local model (local_model=True) or call an API / import files (False)."""
    chosen = [
        n
        for n in (config[section] if among is None else among)
        if placement.runs_on_cluster(config, section, n) == local_model
    ]
    return "|".join(re.escape(n) for n in sorted(chosen)) or "(?!)"


def calls_api(llm):
    """The `localrule` setting of a job without wildcards: True when the named LLM is an API
    (or there is none: the job is not part of this configuration)."""
    return llm is None or not placement.runs_on_cluster(config, "llms", llm)


def llm_env(llm):
    return ENVS["api" if calls_api(llm) else "train"]


def _slurm(resources):
    """Resources plus the site's partition/account/qos; unset ones are None, which Snakemake drops."""
    site = placement.slurm_settings(config, resources["gpu"])
    return {**resources, **{k: site.get(k) for k in ("slurm_partition", "slurm_account", "qos")}}


RESOURCE_KEYS = ("mem_mb", "runtime", "gpu", "gpu_model", "nodes", "slurm_partition", "slurm_account", "qos")


def _directives(compute):
    """`threads:` and `resources: **` from compute(wildcards, attempt) -> resources dict."""
    threads = lambda wildcards: compute(wildcards, 1)["threads"]
    resources = {
        key: (lambda k: lambda wildcards, attempt: _slurm(compute(wildcards, attempt)).get(k))(key)
        for key in RESOURCE_KEYS
    }
    return threads, resources


def model_threads(stage, backbone_of):
    """threads: for a job of `stage` running backbone_of(wildcards) (a backbone name, or None)."""
    return _directives(lambda w, attempt: placement.job_resources(config, stage, backbone_of(w), attempt))[0]


def model_resources(stage, backbone_of):
    """resources: **model_resources(...), the SLURM request of the same job."""
    return _directives(lambda w, attempt: placement.job_resources(config, stage, backbone_of(w), attempt))[1]


def finetune_threads():
    return _directives(lambda w, attempt: placement.finetune_resources(config, w.model, attempt))[0]


def finetune_resources():
    return _directives(lambda w, attempt: placement.finetune_resources(config, w.model, attempt))[1]


# what each model-running rule runs, from its wildcards
def generator_backbone(wildcards):
    return placement.generator_backbone(config, wildcards.generator)


def judge_backbone(wildcards):
    return placement.judge_backbone(config, wildcards.judge)


def llm_backbone(llm):
    return lambda wildcards: placement.llm_backbone(config, llm) if llm else None
