# Judges measured against people: each judge under judge_validation.judges judges alpaca_eval's
# human cross-annotations in both orders through the judge rule itself (its prompt, settings,
# cache and ledger), and its table sets the judge beside the people, `longest` and alpaca_eval's
# published evaluator rows (README: Judges against people).
from snakemake.logging import logger

from alpacare import crossannotations, judgevalidation
from alpacare.config import verdict_cells

VALIDATION = config.get("judge_validation") or {}
VALIDATED = judgevalidation.validated_judges(config)
VALIDATION_SOURCE = crossannotations.source_params(VALIDATION) if VALIDATED else {}
# `all` asks for the tables only once the people's file can be checked: an unpinned download would
# stop the whole grid at its first job. Asked for by name, a table's job says what to pin.
JUDGE_VALIDATION_TARGETS = [f"results/judges/{j}/validation.md" for j in VALIDATED]
if VALIDATED and not crossannotations.is_pinned(VALIDATION_SOURCE):
    logger.warning(
        f"judge_validation: {VALIDATION_SOURCE.get('hub') or VALIDATION_SOURCE.get('url')} has no pinned revision "
        "and SHA-256, so `all` leaves out results/judges/*/validation.* (README: Judges against people says how "
        "to pin it, or to give a local copy)"
    )
    JUDGE_VALIDATION_TARGETS = []
# with a judge_validation section, the judges' position and length preferences on the grid's own pairs too
if config.get("judge_validation") is not None and verdict_cells(config):
    JUDGE_VALIDATION_TARGETS.append("results/tables/judge_preferences.md")
VALIDATION_PAIRS = {
    "output_1": "results/judges/validation_pairs/output_1.json",
    "output_2": "results/judges/validation_pairs/output_2.json",
}


rule judge_validation_data:
    """alpaca_eval's human cross-annotations, refused unless they match their pin and format."""
    input:
        [VALIDATION_SOURCE["path"]] if "path" in VALIDATION_SOURCE else [],
        code=code("stages.crossannotations", "crossannotations"),
    output:
        "results/judges/crossannotations.json",
    log:
        "results/logs/judge_validation_data.log",
    localrule: True
    conda:
        ENVS["report"]
    params:
        source=VALIDATION_SOURCE,
    script:
        "../scripts/judge_validation_data.py"


rule judge_validation_pairs:
    """The cross-annotated pairs (the first `limit`) as two output files: output_1 plays the reference."""
    input:
        "results/judges/crossannotations.json",
        code=code("stages.crossannotations", "crossannotations"),
    output:
        **VALIDATION_PAIRS,
    log:
        "results/logs/judge_validation_pairs.log",
    localrule: True
    conda:
        ENVS["report"]
    params:
        limit=VALIDATION.get("limit"),
    script:
        "../scripts/judge_validation_pairs.py"


# the judge rule itself on the pairs: the same script, prompt, settings, cache and ledger as on the grid
use rule judge as judge_validation_verdicts with:
    input:
        unpack(
            lambda w: {
                "model": VALIDATION_PAIRS["output_2"],
                "reference": VALIDATION_PAIRS["output_1"],
                **planning.judge_prompt_file(config, w.judge),
                **planning.llm_inputs(config, config["judges"][w.judge]["llm"], key="judge_model"),
            }
        ),
        code=code("stages.judge", "stages.common", "judge", "data", "llm", "checkpoints", "hardware"),
    output:
        "results/judges/{judge}/validation.verdicts.jsonl",
    log:
        "results/logs/judge_validation/{judge}.log",
    wildcard_constraints:
        judge=names_running("judges", among=VALIDATED),


use rule judge_api as judge_validation_verdicts_api with:
    input:
        unpack(
            lambda w: {
                "model": VALIDATION_PAIRS["output_2"],
                "reference": VALIDATION_PAIRS["output_1"],
                **planning.judge_prompt_file(config, w.judge),
            }
        ),
        code=code("stages.judge", "stages.common", "judge", "data", "llm", "checkpoints", "hardware"),
    output:
        "results/judges/{judge}/validation.verdicts.jsonl",
    log:
        "results/logs/judge_validation/{judge}.log",
    wildcard_constraints:
        judge=names_running("judges", local_model=False, among=VALIDATED),


rule judge_validation:
    """A judge against people: alpaca_eval's evaluator metrics with uncertainties, beside its published rows."""
    input:
        verdicts="results/judges/{judge}/validation.verdicts.jsonl",
        crossannotations="results/judges/crossannotations.json",
        output_1=VALIDATION_PAIRS["output_1"],
        published="data/judges/alpaca_eval_evaluators.yaml",
        code=code("stages.judgevalidation", "judgevalidation", "crossannotations"),
    output:
        json="results/judges/{judge}/validation.json",
        md="results/judges/{judge}/validation.md",
        # the report shows the CSV as a table, with the caption
        csv=report(
            "results/judges/{judge}/validation.csv",
            caption="../report/judge_validation.rst",
            category="Judges against people",
            labels={"table": "{judge} against people"},
        ),
    log:
        "results/logs/judge_validation/{judge}.table.log",
    wildcard_constraints:
        judge=names("judges"),
    localrule: True
    conda:
        ENVS["report"]
    params:
        source=VALIDATION_SOURCE,
        limit=VALIDATION.get("limit"),
        method=lambda w: config["judges"][w.judge]["method"],  # the table notes a log-prob judge's variance
    script:
        "../scripts/judge_validation.py"


rule judge_preferences:
    """Each judge's position and length preferences per test set and difficulty, on the planned cells."""
    input:
        # VERDICTS, OUTPUTS and TESTSETS: rules/report.smk, included after this file
        verdicts=lambda w: list(VERDICTS.values()),
        outputs=lambda w: list(OUTPUTS.values()),
        testsets=lambda w: [f"results/testsets/{t}.jsonl" for t in TESTSETS],
        code=code("stages.judgevalidation", "judgevalidation", "crossannotations"),
    output:
        csv=report(
            "results/tables/judge_preferences.csv",
            caption="../report/judge_preferences.rst",
            category="Judges against people",
            labels={"table": "judge preferences on the grid"},
        ),
        md="results/tables/judge_preferences.md",
    log:
        "results/logs/judge_preferences.log",
    localrule: True
    conda:
        ENVS["report"]
    params:
        verdict_keys=lambda w: [list(k) for k in VERDICTS],
        output_keys=lambda w: [list(k) for k in OUTPUTS],
        testsets=lambda w: TESTSETS,
    script:
        "../scripts/judge_preferences.py"
