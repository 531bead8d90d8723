# alpacare: medical instruction tuning as one DAG of file targets. See README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/cluster.smk"
include: "rules/data.smk"
include: "rules/selfinstruct.smk"
include: "rules/finetune.smk"
include: "rules/generate.smk"
include: "rules/judge.smk"
include: "rules/report.smk"
include: "rules/stats.smk"
include: "rules/usmle.smk"
include: "rules/ledger.smk"


rule all:
    input:
        "results/tables/winrates.csv",
        "results/tables/winrates.md",
        "results/figures/winrates.png",
        stats_targets(),
        USMLE_TARGETS,
