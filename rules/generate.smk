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


def import_pin(name, testset):
    """An imported file's pin, as a param of its own (the job does not read it): a new checksum
    reimports (published.py is no code input)."""
    where = config["generators"][name].get("import", {}).get(testset)
    return published.params(where) if where else {}


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
        pin=lambda w: import_pin(w.generator, w.testset),
        max_new_tokens=lambda w: None if generator_plan(w.generator, w.testset)[0] == "import" else config["generation"]["max_new_tokens"],
        # prompt + output, for local models in the Alpaca template (chat and API models: max_new_tokens only)
        max_length=lambda w: config["generation"].get("max_length") if generator_plan(w.generator, w.testset)[0] == "alpaca" else None,
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
