# Pairwise judging of a model's outputs against a reference's, in both orders.


rule judge:
    """A local judge's verdicts on a model's outputs against a reference's, in both orders."""
    input:
        unpack(
            lambda w: {
                "model": f"results/outputs/{w.model}/{w.testset}.json",
                "reference": f"results/outputs/{w.reference}/{w.testset}.json",
                **planning.judge_prompt_file(config, w.judge),
                **planning.llm_inputs(config, config["judges"][w.judge]["llm"], key="judge_model"),
            }
        ),
        code=code("stages.judge", "stages.common", "judge", "data", "llm", "checkpoints", "hardware"),
    output:
        "results/verdicts/{judge}/{reference}/{testset}/{model}.jsonl",
    log:
        "results/logs/judge/{judge}/{reference}/{testset}/{model}.log",
    wildcard_constraints:
        model=names("generators"),
        judge=names_running("judges"),
    conda:
        ENVS["train"]
    threads: model_threads("judge", judge_backbone)
    resources:
        **model_resources("judge", judge_backbone),
    params:
        judge=lambda w: planning.judge_settings(config, w.judge),
        spec=lambda w: planning.public(config["llms"][config["judges"][w.judge]["llm"]]),
        official_prompt=lambda w: planning.judge_official_pins(config, w.judge),
    script:
        "../scripts/judge.py"


# API judges: the same rule, run on the submit host
use rule judge as judge_api with:
    """An API judge's verdicts on a model's outputs against a reference's, in both orders (on the submit host)."""
    wildcard_constraints:
        model=names("generators"),
        judge=names_running("judges", local_model=False),
    localrule: True
    conda:
        ENVS["api"]
