# Win-rate tables and figures over every (judge, reference, test set, model) of `evaluation`.
from alpacare.config import compared_outputs, verdict_cells

# every cell of `evaluation` and of each paper figure (`figures:`), once: (judge, reference, test
# set, model); a config with neither (statistics only, say) plans no judging
VERDICTS = {key: "results/verdicts/{}/{}/{}/{}.jsonl".format(*key) for key in verdict_cells(config)}
WINRATE_TARGETS = (
    ["results/tables/winrates.csv", "results/tables/winrates.md", "results/figures/winrates.png"]
    if VERDICTS
    else []
)
# every compared output file, for the output lengths behind the length-controlled win rate
OUTPUTS = {(g, t): f"results/outputs/{g}/{t}.json" for g, t in compared_outputs(config)}
TESTSETS = sorted({t for _, _, t, _ in VERDICTS})


rule report:
    input:
        verdicts=list(VERDICTS.values()),
        outputs=list(OUTPUTS.values()),
        testsets=[f"results/testsets/{t}.jsonl" for t in TESTSETS],
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
        testsets=TESTSETS,
    localrule: True
    conda:
        ENVS["report"]
    log:
        "results/logs/report.log",
    script:
        "../scripts/report.py"
