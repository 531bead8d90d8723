# Win-rate tables and figures over every (judge, reference, test set, model) of `evaluation`.
import itertools

# a config without `evaluation` (statistics only, say) plans no judging
EVAL = config.get("evaluation") or dict.fromkeys(("models", "references", "judges", "testsets"), [])
WINRATE_TARGETS = (
    ["results/tables/winrates.csv", "results/tables/winrates.md", "results/figures/winrates.png"]
    if EVAL["models"]
    else []
)
VERDICTS = {
    key: "results/verdicts/{}/{}/{}/{}.jsonl".format(*key)
    for key in itertools.product(EVAL["judges"], EVAL["references"], EVAL["testsets"], EVAL["models"])
}
# every compared output file, for the output lengths behind the length-controlled win rate
OUTPUTS = {
    (g, t): f"results/outputs/{g}/{t}.json"
    for g in dict.fromkeys(EVAL["models"] + EVAL["references"])
    for t in EVAL["testsets"]
}


rule report:
    input:
        verdicts=list(VERDICTS.values()),
        outputs=list(OUTPUTS.values()),
        testsets=[f"results/testsets/{t}.jsonl" for t in EVAL["testsets"]],
        code=code("stages.report", "report", "winrates"),
    output:
        csv=report("results/tables/winrates.csv", caption="../report/winrates_table.rst", category="Tables", labels={"table": "win rates (CSV)"}),
        md="results/tables/winrates.md",
        tex="results/tables/winrates.tex",
        html=report("results/tables/winrates.html", caption="../report/winrates_table.rst", category="Tables", labels={"table": "win rates"}),
        difficulty_csv="results/tables/winrates_by_difficulty.csv",
        difficulty_md="results/tables/winrates_by_difficulty.md",
        difficulty_tex="results/tables/winrates_by_difficulty.tex",
        difficulty_html=report("results/tables/winrates_by_difficulty.html", caption="../report/difficulty_table.rst", category="Tables", labels={"table": "win rates by difficulty"}),
        png=report("results/figures/winrates.png", caption="../report/winrates.rst", category="Figures", labels={"figure": "win rates (PNG)"}),
        svg=report("results/figures/winrates.svg", caption="../report/winrates.rst", category="Figures", labels={"figure": "win rates (SVG)"}),
    params:
        verdict_keys=[list(k) for k in VERDICTS],
        output_keys=[list(k) for k in OUTPUTS],
        testsets=EVAL["testsets"],
    localrule: True
    conda:
        ENVS["report"]
    log:
        "results/logs/report.log",
    script:
        "../scripts/report.py"
