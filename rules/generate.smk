# Outputs of every generator on every test set: results/outputs/{generator}/{testset}.json


def generator_plan(name, testset):
    """How a generator yields outputs for a test set: (kind, inputs, params)."""
    spec = config["generators"][name]
    if testset in spec.get("import", {}):
        return "import", {}, {"import_url": spec["import"][testset]}
    if "model" in spec:
        return "alpaca", {"model": f"results/checkpoints/{spec['model']}"}, {"spec": {"provider": "local"}}
    if "backbone" in spec:
        return "alpaca", {"model": backbone_dir(spec["backbone"])}, {"spec": {"provider": "local"}}
    llm = config["llms"][spec["llm"]]
    return "chat", llm_inputs(spec["llm"]), {"spec": public(llm)}


rule generate:
    input:
        unpack(
            lambda w: {
                "testset": f"results/testsets/{w.testset}.jsonl",
                **generator_plan(w.generator, w.testset)[1],
            }
        ),
        code=code("stages.generate", "stages.common", "outputs", "template", "data", "llm", "checkpoints"),
    output:
        "results/outputs/{generator}/{testset}.json",
    wildcard_constraints:
        generator=names_running("generators"),
    params:
        kind=lambda w: generator_plan(w.generator, w.testset)[0],
        plan=lambda w: generator_plan(w.generator, w.testset)[2],
        max_new_tokens=config["generation"]["max_new_tokens"],
    threads: model_threads("generate", generator_backbone)
    resources:
        **model_resources("generate", generator_backbone),
    conda:
        ENVS["train"]
    log:
        "results/logs/generate/{generator}/{testset}.log",
    script:
        "../scripts/generate.py"


# API models and imported outputs: the same rule, run on the submit host
use rule generate as generate_api with:
    wildcard_constraints:
        generator=names_running("generators", local_model=False),
    conda:
        ENVS["api"]
    localrule: True
