# alpacare: medical instruction tuning as one DAG of file targets. See README.md.
from snakemake.utils import min_version

min_version("9.0")


# A config given with --configfile is the whole configuration (it may say `extends: config.yaml`);
# the default run's config.yaml applies only when none is given.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/cluster.smk"
include: "rules/data.smk"
include: "rules/selfinstruct.smk"
include: "rules/finetune.smk"
include: "rules/generate.smk"
include: "rules/judge.smk"
include: "rules/judgevalidation.smk"
include: "rules/report.smk"
include: "rules/stats.smk"
include: "rules/usmle.smk"
include: "rules/ledger.smk"
include: "rules/bundle.smk"
include: "rules/docs.smk"


rule all:
    """Everything the config plans: win-rate tables and figures, data statistics and USMLE results."""
    input:
        WINRATE_TARGETS,
        STATS_TARGETS,
        USMLE_TARGETS,
        JUDGE_VALIDATION_TARGETS,
