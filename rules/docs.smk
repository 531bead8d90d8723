# Generated documentation, built only when asked for by name: snakemake --cores 1 docs/config.md


rule config_reference:
    """docs/config.md, the configuration reference generated from schemas/config.schema.yaml."""
    input:
        schema="schemas/config.schema.yaml",
        code=code("configdoc"),
    output:
        "docs/config.md",
    log:
        "results/logs/config_reference.log",
    localrule: True
    conda:
        ENVS["report"]
    shell:
        "python -m alpacare.configdoc -o {output} > {log} 2>&1"
