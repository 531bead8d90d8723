# Win-rate tables and figures over every (judge, reference, test set, model) planned: the
# results tables (rule report), each paper figure of `figures:` (rule figure), and alpaca_eval's
# files per judge, reference and test set (rule leaderboard). Each recomputes its cells' numbers
# from the verdicts with the same seeds, so they agree to the digit and each reruns only when
# its own cells, settings or code change.
import itertools

from alpacare.config import compared_outputs, verdict_cells
from alpacare.report import lc_rule

# every cell of `evaluation` and of each paper figure (`figures:`), once: (judge, reference, test
# set, model); a config with neither (statistics only, say) plans no judging
VERDICTS = {key: "results/verdicts/{}/{}/{}/{}.jsonl".format(*key) for key in verdict_cells(config)}
FIGURES = config.get("figures", {})
# per (judge, reference, test set): the models judged against that reference
BOARDS = {}
for _judge, _reference, _testset, _model in VERDICTS:
    BOARDS.setdefault((_judge, _reference, _testset), []).append(_model)
LEADERBOARDS = ["results/alpaca_eval/{}/{}/{}/leaderboard.csv".format(*key) for key in BOARDS]
WINRATE_TARGETS = (
    ["results/tables/winrates.csv", "results/tables/winrates.md", "results/figures/winrates.png",
     *(f"results/figures/{name}.png" for name in FIGURES), *LEADERBOARDS]
    if VERDICTS
    else []
)
# every compared output file, for the output lengths behind the length-controlled win rate
OUTPUTS = {(g, t): f"results/outputs/{g}/{t}.json" for g, t in compared_outputs(config)}
TESTSETS = sorted({t for _, _, t, _ in VERDICTS})


def figure_cells(name):
    spec = FIGURES[name]
    return list(itertools.product(spec["judges"], spec["references"], spec["testsets"], spec["models"]))


def cell_outputs(cells):
    """The output files (generator, test set) that the cells compare."""
    return list(dict.fromkeys((g, t) for _, reference, t, model in cells for g in (model, reference)))


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
        agreement_csv="results/tables/judge_agreement.csv",
        agreement_md="results/tables/judge_agreement.md",
        agreement_tex="results/tables/judge_agreement.tex",
        agreement_html=report("results/tables/judge_agreement.html", caption="../report/agreement_table.rst", category="Tables", labels={"table": "judge agreement"}),
        png=report("results/figures/winrates.png", caption="../report/winrates.rst", category="Figures", labels={"figure": "win rates (PNG)"}),
        svg=report("results/figures/winrates.svg", caption="../report/winrates.rst", category="Figures", labels={"figure": "win rates (SVG)"}),
    params:
        verdict_keys=[list(k) for k in VERDICTS],
        output_keys=[list(k) for k in OUTPUTS],
        testsets=TESTSETS,
        lc_rule=lc_rule(),   # for the captions: when the length-controlled win rate is shown
    localrule: True
    conda:
        ENVS["report"]
    log:
        "results/logs/report.log",
    script:
        "../scripts/report.py"


rule figure:
    input:
        verdicts=lambda w: [VERDICTS[c] for c in figure_cells(w.figure)],
        outputs=lambda w: [OUTPUTS[k] for k in cell_outputs(figure_cells(w.figure))],
        published=lambda w: [FIGURES[w.figure]["published"]] if FIGURES[w.figure].get("paper_figure") else [],
        code=code("stages.figure", "stages.report", "report", "winrates", "figures"),
    output:
        png=report("results/figures/{figure}.png", caption="../report/figure.rst", category="Paper figures", labels={"figure": "{figure}"}),
        svg="results/figures/{figure}.svg",
        csv="results/tables/{figure}.csv",
        md="results/tables/{figure}.md",
        html=report("results/tables/{figure}.html", caption="../report/figure_table.rst", category="Paper figures", labels={"figure": "{figure} (table)"}),
    wildcard_constraints:
        figure=names("figures"),
    params:
        spec=lambda w: FIGURES[w.figure],   # the grid, title, caption, labels and published figure: all drawn
        verdict_keys=lambda w: [list(c) for c in figure_cells(w.figure)],
        output_keys=lambda w: [list(k) for k in cell_outputs(figure_cells(w.figure))],
        lc_rule=lc_rule(),
    localrule: True
    conda:
        ENVS["report"]
    log:
        "results/logs/figure/{figure}.log",
    script:
        "../scripts/figure.py"


rule leaderboard:
    input:
        verdicts=lambda w: [VERDICTS[(w.judge, w.reference, w.testset, m)] for m in BOARDS[(w.judge, w.reference, w.testset)]],
        outputs=lambda w: [OUTPUTS[(g, w.testset)] for g in [w.reference, *BOARDS[(w.judge, w.reference, w.testset)]]],
        code=code("stages.leaderboard", "stages.report", "report", "winrates", "leaderboard", "data"),
    output:
        annotations="results/alpaca_eval/{judge}/{reference}/{testset}/annotations.json",
        leaderboard="results/alpaca_eval/{judge}/{reference}/{testset}/leaderboard.csv",
    params:
        models=lambda w: BOARDS[(w.judge, w.reference, w.testset)],
    localrule: True
    conda:
        ENVS["report"]
    log:
        "results/logs/leaderboard/{judge}/{reference}/{testset}.log",
    script:
        "../scripts/leaderboard.py"
