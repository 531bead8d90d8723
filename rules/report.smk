# Win-rate tables and figure over every (judge, reference, test set, model) of `evaluation`.
import itertools

EVAL = config["evaluation"]
VERDICTS = {
    key: "results/verdicts/{}/{}/{}/{}.jsonl".format(*key)
    for key in itertools.product(EVAL["judges"], EVAL["references"], EVAL["testsets"], EVAL["models"])
}


rule report:
    input:
        verdicts=list(VERDICTS.values()),
        code=code("stages.report", "report", "judge"),
    output:
        csv="results/tables/winrates.csv",
        md="results/tables/winrates.md",
        figure=report("results/figures/winrates.png", caption="../report/winrates.rst", category="Results"),
    params:
        verdict_keys=[list(k) for k in VERDICTS],
    localrule: True
    conda:
        ENVS["report"]
    log:
        "results/logs/report.log",
    script:
        "../scripts/report.py"
