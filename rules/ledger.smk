# What the LLM calls cost, per rule and endpoint, from the shards of results/ledger/ (one per
# LLM-calling job, written as it calls). The ledger grows outside the DAG, so ask for this table explicitly:
# snakemake -f results/tables/ledger.md


rule ledger:
    """The cost of the LLM calls so far, per rule and endpoint, from the ledger's shards (asked for by name)."""
    input:
        code=code("ledger", "io"),
    output:
        # in the HTML report when asked for with the run's targets: snakemake --report report.html all ledger
        md=report(
            "results/tables/ledger.md",
            caption="../report/ledger.rst",
            category="LLM calls",
            labels={"table": "LLM calls and cost (Markdown)"},
        ),
        csv=report(
            "results/tables/ledger.csv",
            caption="../report/ledger.rst",
            category="LLM calls",
            labels={"table": "LLM calls and cost (CSV)"},
        ),
    log:
        "results/logs/ledger.log",
    localrule: True
    conda:
        ENVS["report"]
    params:
        ledger=config["llm"]["ledger"],
    script:
        "../scripts/ledger.py"
