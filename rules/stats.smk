# Data statistics (the paper's Table 2, distributions, length histograms, verb/object breakdown)
# and dataset cards, for the datasets listed under stats.datasets.
STATS = config.get("stats", {})
STATS_TARGETS = planning.stats_targets(config)


rule stats:
    """Table 2-style statistics of a training set: counts, average lengths, length histograms and metadata distributions."""
    input:
        dataset="results/data/{dataset}.json",
        code=code("stages.stats", "stats"),
    output:
        summary="results/stats/{dataset}/summary.json",
        table=report(
            "results/stats/{dataset}/table.md",
            caption="../report/stats_table.rst",
            category="Data statistics",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "content": "Table 2 and distributions (Markdown)"},
        ),
        lengths=report(
            "results/stats/{dataset}/lengths.png",
            caption="../report/lengths.rst",
            category="Data statistics",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "content": "length histograms"},
        ),
        distributions=report(
            "results/stats/{dataset}/distributions.png",
            caption="../report/distributions.rst",
            category="Data statistics",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "content": "type, topic, view and difficulty"},
        ),
    log:
        "results/logs/stats/{dataset}.log",
    localrule: True
    conda:
        ENVS["report"]
    params:
        top=STATS.get("top"),
    script:
        "../scripts/stats.py"


rule verbs:
    """The root verb / direct object breakdown of a training set's instructions (spaCy): table, summary and figure."""
    input:
        dataset="results/data/{dataset}.json",
        code=code("stages.stats", "stats"),
    output:
        table=report(
            "results/stats/{dataset}/verbs.md",
            caption="../report/verbs_table.rst",
            category="Data statistics",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "content": "root verbs and objects (Markdown)"},
        ),
        summary="results/stats/{dataset}/verbs.json",
        figure=report(
            "results/stats/{dataset}/verbs.png",
            caption="../report/verbs.rst",
            category="Data statistics",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "content": "root verbs and objects"},
        ),
    log:
        "results/logs/stats/{dataset}.verbs.log",
    localrule: True
    conda:
        ENVS["report"]
    params:
        top=STATS.get("top"),
        models=STATS.get("spacy_models"),
    script:
        "../scripts/verbs.py"


rule statistics:
    """Every statistics table of stats.datasets, and the card of each self-instructed one."""
    input:
        STATS_TARGETS,
