# Outputs of every generator on every test set: results/outputs/{generator}/{testset}.json


rule generate:
    """A local model's outputs on one test set."""
    input:
        unpack(
            lambda w: {
                "testset": f"results/testsets/{w.testset}.jsonl",
                **planning.generator_plan(config, w.generator, w.testset)[1],
                "code": code(*planning.generator_plan(config, w.generator, w.testset)[3]),
            }
        ),
    output:
        "results/outputs/{generator}/{testset}.json",
    log:
        "results/logs/generate/{generator}/{testset}.log",
    wildcard_constraints:
        generator=names_running("generators"),
    conda:
        ENVS["train"]
    threads: model_threads("generate", generator_backbone)
    resources:
        **model_resources("generate", generator_backbone),
    params:
        kind=lambda w: planning.generator_plan(config, w.generator, w.testset)[0],
        plan=lambda w: planning.generator_plan(config, w.generator, w.testset)[2],
        pin=lambda w: planning.import_pin(config, w.generator, w.testset),
        # max_length: prompt + output, for local models in the Alpaca template (chat and API models: max_new_tokens
        # only); under AlpaCare's protocol its own lengths (planning.generation_lengths)
        max_new_tokens=lambda w: planning.generation_lengths(config, w.generator, w.testset)[0],
        max_length=lambda w: planning.generation_lengths(config, w.generator, w.testset)[1],
    script:
        "../scripts/generate.py"


# API models and imported outputs: the same rule, run on the submit host
use rule generate as generate_api with:
    """An API model's outputs on one test set, or outputs imported from a file (on the submit host)."""
    wildcard_constraints:
        generator=names_running("generators", local_model=False),
    localrule: True
    conda:
        ENVS["api"]
