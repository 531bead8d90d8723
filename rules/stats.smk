# Data statistics (the paper's Table 2, distributions, length histograms, verb/object breakdown)
# and dataset cards, for the datasets listed under stats.datasets.
STATS = config.get("stats", {})


def stats_targets():
    out = []
    for name in STATS.get("datasets", []):
        out += [f"results/stats/{name}/table.md", f"results/stats/{name}/verbs.md"]
        if config["datasets"][name].get("source") == "selfinstruct":
            out.append(f"results/data/{name}.card.md")
    return out


rule stats:
    input:
        dataset="results/data/{dataset}.json",
        code=code("stages.stats", "stats"),
    output:
        summary="results/stats/{dataset}/summary.json",
        table="results/stats/{dataset}/table.md",
        lengths="results/stats/{dataset}/lengths.png",
        distributions="results/stats/{dataset}/distributions.png",
    params:
        top=STATS.get("top"),
    localrule: True
    conda:
        ENVS["report"]
    log:
        "results/logs/stats/{dataset}.log",
    script:
        "../scripts/stats.py"


rule verbs:
    input:
        dataset="results/data/{dataset}.json",
        code=code("stages.stats", "stats"),
    output:
        table="results/stats/{dataset}/verbs.md",
        summary="results/stats/{dataset}/verbs.json",
        figure="results/stats/{dataset}/verbs.png",
    params:
        top=STATS.get("top"),
        models=STATS.get("spacy_models"),
    localrule: True
    conda:
        ENVS["report"]
    log:
        "results/logs/stats/{dataset}.verbs.log",
    script:
        "../scripts/verbs.py"


rule statistics:
    input:
        stats_targets(),
