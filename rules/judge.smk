# Pairwise judging of a model's outputs against a reference's, in both orders.


from alpacare import judge as judging


def judge_prompt_file(name):
    """The judge's prompt file, relative to the project: a name under prompts/judge/ or a path;
    none for AlpaCare's own prompt (alpacare-official), which the job downloads."""
    prompt = config["judges"][name]["prompt"]
    if prompt == judging.OFFICIAL:
        return {}
    return {"prompt": prompt if prompt.endswith((".yaml", ".yml")) else f"prompts/judge/{prompt}.yaml"}


def judge_official_pins(name):
    """The published files of an alpacare-official judge prompt: a new pin reruns its verdicts."""
    if config["judges"][name]["prompt"] != judging.OFFICIAL:
        return {}
    provider = config["llms"][config["judges"][name]["llm"]]["provider"]
    return {role: published.params(ref) for role, ref in judging.official_refs(provider).items()}


def judge_settings(name):
    """Exactly what changes a judge's verdicts (a reply judge's tie margin and a log-prob
    judge's re-asks change nothing, so editing them reruns nothing)."""
    spec = config["judges"][name]
    keep = ("method", "max_tokens", "reasks") if spec["method"] == "reply" else ("method", "tie_margin")
    return {k: spec[k] for k in keep}


rule judge:
    input:
        unpack(
            lambda w: {
                "model": f"results/outputs/{w.model}/{w.testset}.json",
                "reference": f"results/outputs/{w.reference}/{w.testset}.json",
                **judge_prompt_file(w.judge),
                **llm_inputs(config["judges"][w.judge]["llm"], key="judge_model"),
            }
        ),
        code=code("stages.judge", "stages.common", "judge", "data", "llm", "checkpoints", "hardware"),
    output:
        "results/verdicts/{judge}/{reference}/{testset}/{model}.jsonl",
    wildcard_constraints:
        model=names("generators"),
        judge=names_running("judges"),
    params:
        judge=lambda w: judge_settings(w.judge),
        spec=lambda w: public(config["llms"][config["judges"][w.judge]["llm"]]),
        official_prompt=lambda w: judge_official_pins(w.judge),
    threads: model_threads("judge", judge_backbone)
    resources:
        **model_resources("judge", judge_backbone),
    conda:
        ENVS["train"]
    log:
        "results/logs/judge/{judge}/{reference}/{testset}/{model}.log",
    script:
        "../scripts/judge.py"


# API judges: the same rule, run on the submit host
use rule judge as judge_api with:
    wildcard_constraints:
        model=names("generators"),
        judge=names_running("judges", local_model=False),
    conda:
        ENVS["api"]
    localrule: True
