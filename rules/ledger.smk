# What the LLM calls cost, per rule and endpoint, from the shards of results/ledger/ (one per
# LLM-calling job, written as it calls). The ledger grows outside the DAG, so ask for this table explicitly:
# snakemake -f results/tables/ledger.md


rule ledger:
    input:
        code=code("ledger", "io"),
    output:
        md="results/tables/ledger.md",
        csv="results/tables/ledger.csv",
    params:
        ledger=config["llm"]["ledger"],
    localrule: True
    conda:
        ENVS["report"]
    log:
        "results/logs/ledger.log",
    script:
        "../scripts/ledger.py"
