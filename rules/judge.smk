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
    params:
        judge=lambda w: config["judges"][w.judge],
        spec=lambda w: public(config["llms"][config["judges"][w.judge]["llm"]]),
    threads: TORCH_THREADS
    log:
        "results/logs/judge/{judge}/{reference}/{testset}/{model}.log",
    script:
        "../scripts/judge.py"
