# Fine-tuning: one checkpoint per model (backbone x training data x method).


def hyperparameters(name):
    spec = dict(config["models"][name])
    for key in ("backbone", "data", "gpus"):
        spec.pop(key)
    return {**spec, "seed": config["run_seed"]}


rule finetune:
    input:
        data=lambda w: [f"results/data/{d['dataset']}.json" for d in config["models"][w.model]["data"]],
        backbone=lambda w: backbone_dir(config["models"][w.model]["backbone"]),
        code=code("stages.finetune", "train", "template", "mixture"),
    output:
        directory("results/checkpoints/{model}"),
    params:
        caps=lambda w: [d.get("max") for d in config["models"][w.model]["data"]],
        hp=lambda w: hyperparameters(w.model),
    threads: finetune_threads()
    resources:
        **finetune_resources(),
    conda:
        ENVS["train"]
    log:
        "results/logs/finetune/{model}.log",
    script:
        "../scripts/finetune.py"
