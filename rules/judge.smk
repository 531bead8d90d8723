# Pairwise judging of a model's outputs against a reference's, in both orders.


rule judge:
    input:
        unpack(
            lambda w: {
                "model": f"results/outputs/{w.model}/{w.testset}.json",
                "reference": f"results/outputs/{w.reference}/{w.testset}.json",
                **llm_inputs(config["judges"][w.judge]["llm"], key="judge_model"),
            }
        ),
        code=code("stages.judge", "stages.common", "judge", "data", "llm", "checkpoints"),
    output:
        "results/verdicts/{judge}/{reference}/{testset}/{model}.jsonl",
    wildcard_constraints:
        model=names("generators"),
        judge=names_running("judges"),
    params:
        judge=lambda w: config["judges"][w.judge],
        spec=lambda w: public(config["llms"][config["judges"][w.judge]["llm"]]),
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
