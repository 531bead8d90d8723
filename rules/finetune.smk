# Fine-tuning: one checkpoint per model (backbone x training data x method).
from alpacare.stages.finetune import split_settings


rule finetune:
    """A fine-tuned checkpoint of one model (backbone x training data x method), with its loss log and plot."""
    input:
        data=lambda w: [f"results/data/{d['dataset']}.json" for d in config["models"][w.model]["data"]],
        backbone=lambda w: planning.backbone_dir(config["models"][w.model]["backbone"]),
        code=code("stages.finetune", "train", "template", "mixture", "hardware"),
    output:
        # the report shows the loss curve the stage draws beside the weights
        report(
            directory("results/checkpoints/{model}"),
            patterns=["train_{curve}.png"],
            caption="../report/train_loss.rst",
            category="Training",
            labels={"model": "{model}", "figure": "training loss"},
        ),
    log:
        "results/logs/finetune/{model}.log",
    conda:
        ENVS["train"]
    threads: finetune_threads()
    resources:
        **finetune_resources(),
    params:
        # the mixture (caps, seeds) and the hyperparameters its method uses; the runtime
        # settings (GPUs, per-device batch, sharding...) are read from config by the script,
        # since they change how the global batch is reached, not what is learnt
        parts=lambda w: [{k: d.get(k) for k in ("dataset", "max", "seed")} for d in config["models"][w.model]["data"]],
        # (and under AlpaCare's protocol its [PAD] token: planning.training_protocol)
        hp=lambda w: {
            **split_settings(config["models"][w.model], config["run_seed"])[0],
            **planning.training_protocol(config, w.model),
        },
    script:
        "../scripts/finetune.py"
