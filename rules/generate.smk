# Outputs of every generator on every test set: results/outputs/{generator}/{testset}.json


def generator_plan(name, testset):
    """How a generator yields outputs for a test set: (kind, inputs, params, code modules)."""
    spec = config["generators"][name]
    if testset in spec.get("import", {}):
        return "import", {}, {"import_url": spec["import"][testset]}, ("stages.generate", "outputs", "io")
    llm_code = ("stages.generate", "stages.common", "outputs", "template", "data", "llm", "checkpoints", "hardware")
    if "llm" in spec:
        llm = config["llms"][spec["llm"]]
        return "chat", llm_inputs(spec["llm"]), {"spec": public(llm)}, llm_code
    if "model" in spec:
        model_dir = f"results/checkpoints/{spec['model']}"
    elif "backbone" in spec:
        model_dir = backbone_dir(spec["backbone"])
    else:
        model_dir = spec["path"]
    local = {"provider": "local"}
    if config["generation"]["backend"] != "transformers":
        local["backend"] = config["generation"]["backend"]
    return spec.get("template", "alpaca"), {"model": model_dir}, {"spec": local}, llm_code


rule generate:
    input:
        unpack(
            lambda w: {
                "testset": f"results/testsets/{w.testset}.jsonl",
                **generator_plan(w.generator, w.testset)[1],
                "code": code(*generator_plan(w.generator, w.testset)[3]),
            }
        ),
    output:
        "results/outputs/{generator}/{testset}.json",
    wildcard_constraints:
        generator=names_running("generators"),
    params:
        kind=lambda w: generator_plan(w.generator, w.testset)[0],
        plan=lambda w: generator_plan(w.generator, w.testset)[2],
        max_new_tokens=lambda w: None if generator_plan(w.generator, w.testset)[0] == "import" else config["generation"]["max_new_tokens"],
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
