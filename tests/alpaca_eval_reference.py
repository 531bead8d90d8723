"""Run inside a venv holding the `alpaca-eval` package (0.6.6): its own evaluator metrics on a
cross-annotation file, for tests/test_judgevalidation.py to compare with alpacare.judgevalidation.

usage: python tests/alpaca_eval_reference.py CROSSANNOTATIONS.json [JUDGE_ANNOTATIONS.json] > metrics.json

Prints {"humans": {...}, "longest": {...}, "judge": {...}}: alpaca_eval's get_metrics_evaluator
rows (the leaderboard's columns), plus the standard error of the human agreement
(agreement_of_annotations' sem_samples). Correlations need the generators of each pair, which
the cross-annotations lack, so they are left out (NaN) here as in alpacare."""

import json
import math
import sys

import pandas as pd
from alpaca_eval import analyze


def main(cross_path, judge_path=None):
    cross = pd.DataFrame(json.load(open(cross_path)))
    # what alpaca_eval's loader adds to the people's file (constants.ALPACAFARM_GOLD_CROSSANNOTATIONS)
    cross["time_per_example"] = 9.2 * 60 / 15
    cross["price_per_example"] = 0.3
    analyzer = analyze.Analyzer(gold_crossannotations=cross, gold_annotations=None, n_annotators=4, seed=0,
                                scoring_rule="absolute")
    analyzer.estimate_correlations = lambda *args, **kwargs: {"spearman": math.nan, "pearson": math.nan}
    evaluators = {"humans": analyzer.df_gold_crossannotations,
                  "longest": analyze._get_longest_predictor(analyzer.df_gold_crossannotations)}
    if judge_path:
        judge = pd.DataFrame(json.load(open(judge_path)))
        judge["preference"] = judge["preference"].astype(float)
        judge["time_per_example"] = 0.0
        judge["price_per_example"] = 0.0
        evaluators["judge"] = judge
    out = {}
    for name, df in evaluators.items():
        row = analyze.get_metrics_evaluator(analyzer, df, evaluator_name=name)
        sem = analyzer.agreement_of_annotations(annotations_1=df, n_majority_vote_1=1)["sem_samples"] * 100
        out[name] = {k: (None if isinstance(v, float) and math.isnan(v) else float(v)) for k, v in row.items()}
        out[name]["human_agreement_se"] = float(sem)
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
