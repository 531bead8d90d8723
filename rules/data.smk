# Backbones, seed tasks, test sets and training sets.
from alpacare.seeds import is_official, published_ref


rule backbone:
    """A backbone as a plain Hugging Face model directory, converted from a bundled GGUF file or downloaded."""
    input:
        code=code("models"),
    output:
        directory("results/models/{backbone}"),
    log:
        "results/logs/backbone/{backbone}.log",
    localrule: True
    conda:
        ENVS["train"]
    params:
        spec=lambda w: config["backbones"][w.backbone],
    script:
        "../scripts/backbone.py"


rule seeds:
    """The checked seed tasks of every seed file (project files, or AlpaCare's own, downloaded) as JSON Lines."""
    input:
        # files in the project; named seed sets (alpacare-official) are downloaded by the job
        seeds=[s for s in config["seeds"] if not is_official(s)],
        code=code("stages.data", "seeds"),
    output:
        "results/selfinstruct/seeds.jsonl",
    log:
        "results/logs/seeds.log",
    localrule: True
    conda:
        ENVS["api"]
    params:
        sources=config["seeds"],
        pins={s: published.params(published_ref(s)) for s in config["seeds"] if is_official(s)},
    script:
        "../scripts/seeds.py"


rule testset:
    """A test set (a project file, URL, published file or hub dataset) normalized to JSON Lines."""
    input:
        files=lambda w: [config["testsets"][w.testset]["path"]] if "path" in config["testsets"][w.testset] else [],
        code=code("stages.testsets", "testsets", "io"),
    output:
        "results/testsets/{testset}.jsonl",
    log:
        "results/logs/testset/{testset}.log",
    localrule: True
    conda:
        ENVS["api"]
    params:
        spec=lambda w: config["testsets"][w.testset],
        pin=lambda w: (
            published.params(config["testsets"][w.testset]["url"]) if "url" in config["testsets"][w.testset] else {}
        ),
    script:
        "../scripts/testset.py"


rule dataset:
    """A training set in Alpaca format: the self-instruct responses or public instruction data."""
    input:
        responses=lambda w: (
            ["results/selfinstruct/responses.jsonl"]
            if config["datasets"][w.dataset].get("source") == "selfinstruct"
            else []
        ),
        files=lambda w: [config["datasets"][w.dataset]["path"]] if "path" in config["datasets"][w.dataset] else [],
        code=code("stages.dataset", "data"),
    output:
        "results/data/{dataset}.json",
    log:
        "results/logs/dataset/{dataset}.log",
    localrule: True
    conda:
        ENVS["api"]
    params:
        spec=lambda w: config["datasets"][w.dataset],
        pin=lambda w: (
            published.params(config["datasets"][w.dataset]["url"]) if "url" in config["datasets"][w.dataset] else {}
        ),
    script:
        "../scripts/dataset.py"
