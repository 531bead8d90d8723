# Win-rate tables and figures over every (judge, reference, test set, model) planned: the
# results tables (rule report), each paper figure of `figures:` (rule figure), and alpaca_eval's
# files per judge, reference and test set (rule leaderboard). Each recomputes its cells' numbers
# from the verdicts with the same seeds, so they agree to the digit and each reruns only when
# its own cells, settings or code change.
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
    [
        "results/tables/winrates.csv",
        "results/tables/winrates.md",
        "results/figures/winrates.png",
        *(f"results/figures/{name}.png" for name in FIGURES),
        *LEADERBOARDS,
    ]
    if VERDICTS
    else []
)
# every compared output file, for the output lengths behind the length-controlled win rate
OUTPUTS = {(g, t): f"results/outputs/{g}/{t}.json" for g, t in compared_outputs(config)}
TESTSETS = sorted({t for _, _, t, _ in VERDICTS})


rule report:
    """The win-rate tables (overall, by difficulty, judge agreement) and figure over every planned cell."""
    input:
        verdicts=list(VERDICTS.values()),
        outputs=list(OUTPUTS.values()),
        testsets=[f"results/testsets/{t}.jsonl" for t in TESTSETS],
        code=code("stages.report", "report", "winrates"),
    output:
        csv=report(
            "results/tables/winrates.csv",
            caption="../report/winrates_table.rst",
            category="Tables",
            labels={"table": "win rates (CSV)"},
        ),
        md="results/tables/winrates.md",
        tex="results/tables/winrates.tex",
        html=report(
            "results/tables/winrates.html",
            caption="../report/winrates_table.rst",
            category="Tables",
            labels={"table": "win rates"},
        ),
        difficulty_csv="results/tables/winrates_by_difficulty.csv",
        difficulty_md="results/tables/winrates_by_difficulty.md",
        difficulty_tex="results/tables/winrates_by_difficulty.tex",
        difficulty_html=report(
            "results/tables/winrates_by_difficulty.html",
            caption="../report/difficulty_table.rst",
            category="Tables",
            labels={"table": "win rates by difficulty"},
        ),
        agreement_csv="results/tables/judge_agreement.csv",
        agreement_md="results/tables/judge_agreement.md",
        agreement_tex="results/tables/judge_agreement.tex",
        agreement_html=report(
            "results/tables/judge_agreement.html",
            caption="../report/agreement_table.rst",
            category="Tables",
            labels={"table": "judge agreement"},
        ),
        png=report(
            "results/figures/winrates.png",
            caption="../report/winrates.rst",
            category="Figures",
            labels={"figure": "win rates (PNG)"},
        ),
        svg=report(
            "results/figures/winrates.svg",
            caption="../report/winrates.rst",
            category="Figures",
            labels={"figure": "win rates (SVG)"},
        ),
    log:
        "results/logs/report.log",
    localrule: True
    conda:
        ENVS["report"]
    params:
        verdict_keys=[list(k) for k in VERDICTS],
        output_keys=[list(k) for k in OUTPUTS],
        testsets=TESTSETS,
        lc_rule=lc_rule(),  # for the captions: when the length-controlled win rate is shown
    script:
        "../scripts/report.py"


rule figure:
    """One paper figure of `figures:` and its table, from its cells' verdicts."""
    input:
        verdicts=lambda w: [VERDICTS[c] for c in planning.figure_cells(FIGURES[w.figure])],
        outputs=lambda w: [OUTPUTS[k] for k in planning.cell_outputs(planning.figure_cells(FIGURES[w.figure]))],
        published=lambda w: [FIGURES[w.figure]["published"]] if FIGURES[w.figure].get("paper_figure") else [],
        # each judge's measured human agreement, for the caption, where its validation is planned
        validations=lambda w: [
            f"results/judges/{j}/validation.json"
            for j in FIGURES[w.figure]["judges"]
            if f"results/judges/{j}/validation.md" in JUDGE_VALIDATION_TARGETS
        ],
        code=code("stages.figure", "stages.report", "report", "winrates", "figures", "judgevalidation"),
    output:
        png=report(
            "results/figures/{figure}.png",
            caption="../report/figure.rst",
            category="Paper figures",
            labels={"figure": "{figure}"},
        ),
        svg="results/figures/{figure}.svg",
        csv="results/tables/{figure}.csv",
        md="results/tables/{figure}.md",
        html=report(
            "results/tables/{figure}.html",
            caption="../report/figure_table.rst",
            category="Paper figures",
            labels={"figure": "{figure} (table)"},
        ),
    log:
        "results/logs/figure/{figure}.log",
    wildcard_constraints:
        figure=names("figures"),
    localrule: True
    conda:
        ENVS["report"]
    params:
        spec=lambda w: FIGURES[w.figure],  # the grid, title, caption, labels and published figure: all drawn
        verdict_keys=lambda w: [list(c) for c in planning.figure_cells(FIGURES[w.figure])],
        output_keys=lambda w: [list(k) for k in planning.cell_outputs(planning.figure_cells(FIGURES[w.figure]))],
        lc_rule=lc_rule(),
    script:
        "../scripts/figure.py"


rule leaderboard:
    """alpaca_eval's annotations and leaderboard for one judge, reference and test set."""
    input:
        verdicts=lambda w: [
            VERDICTS[(w.judge, w.reference, w.testset, m)] for m in BOARDS[(w.judge, w.reference, w.testset)]
        ],
        outputs=lambda w: [OUTPUTS[(g, w.testset)] for g in [w.reference, *BOARDS[(w.judge, w.reference, w.testset)]]],
        code=code("stages.leaderboard", "stages.report", "report", "winrates", "leaderboard", "data"),
    output:
        annotations="results/alpaca_eval/{judge}/{reference}/{testset}/annotations.json",
        leaderboard=report(
            "results/alpaca_eval/{judge}/{reference}/{testset}/leaderboard.csv",
            caption="../report/leaderboard.rst",
            category="Leaderboards",
            subcategory="{testset}",
            labels={"judge": "{judge}", "reference": "{reference}", "test set": "{testset}"},
        ),
    log:
        "results/logs/leaderboard/{judge}/{reference}/{testset}.log",
    localrule: True
    conda:
        ENVS["report"]
    params:
        models=lambda w: BOARDS[(w.judge, w.reference, w.testset)],
    script:
        "../scripts/leaderboard.py"
