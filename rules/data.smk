# Backbones, seed tasks, test sets and training sets.


rule backbone:
    input:
        code=code("models"),
    output:
        directory("results/models/{backbone}"),
    params:
        spec=lambda w: config["backbones"][w.backbone],
    log:
        "results/logs/backbone/{backbone}.log",
    script:
        "../scripts/backbone.py"


rule seeds:
    input:
        seeds=config["seeds"],
        code=code("stages.data", "seeds"),
    output:
        "results/selfinstruct/seeds.jsonl",
    log:
        "results/logs/seeds.log",
    script:
        "../scripts/seeds.py"


rule testset:
    input:
        files=lambda w: [config["testsets"][w.testset]["path"]] if "path" in config["testsets"][w.testset] else [],
        code=code("stages.testsets", "testsets", "io"),
    output:
        "results/testsets/{testset}.jsonl",
    params:
        spec=lambda w: config["testsets"][w.testset],
    log:
        "results/logs/testset/{testset}.log",
    script:
        "../scripts/testset.py"


rule dataset:
    input:
        responses=lambda w: (
            ["results/selfinstruct/responses.jsonl"]
            if config["datasets"][w.dataset].get("source") == "selfinstruct"
            else []
        ),
        code=code("stages.dataset", "data"),
    output:
        "results/data/{dataset}.json",
    params:
        spec=lambda w: config["datasets"][w.dataset],
    log:
        "results/logs/dataset/{dataset}.log",
    script:
        "../scripts/dataset.py"
