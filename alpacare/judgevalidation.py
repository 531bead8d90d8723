"""Judges measured against people: alpaca_eval's evaluator metrics on its human cross-annotations.

alpaca_eval (tatsu-lab/alpaca_eval, `alpaca_eval analyze_evaluators`; src/alpaca_eval/analyze.py
and metrics/helpers.py, the same in release 0.6.6) scores an automatic annotator on about 650
AlpacaFarm pairs that 4 people each judged (`alpaca_farm_human_crossannotations`). Its
definitions, reproduced here on plain records (tests/test_judgevalidation.py checks them against
the `alpaca-eval` package itself):

- An annotation is a `preference` on a pair (instruction, output_1, output_2): 1 (output_1 is
  better), 2 (output_2), 1.5 (a tie; a legacy 0 means the same), missing when unparsed. The
  n-th annotation of a pair, in file order, has index n; the gold table keeps the pairs with at
  least 4 annotations, the first 4 each.
- Agreement of annotations A with B, A taking n1 of its indices and B n2 of its: for every
  choice of index sets, each side's "Bayes estimator" per pair (the mode of its annotations, a
  tie between modes broken by pandas' `sample(random_state=123)`; the median once continuous
  values appear), then 1 - mean |a - b| over the pairs both sides have (the "absolute" scoring
  rule, alpaca_eval's default). When A and B are the same annotator, index sets that overlap are
  skipped (an annotator is never compared with itself). The combinations are averaged.
- Human agreement: each single annotation of the judge against the mode of all 4 people (for
  the humans themselves: each person against the mode of the other 3, leave-one-out).
- Bias: the error (1 - agreement) of the judge's own mode against the people's mode (0 for the
  humans, by definition). Variance: the error of each of the judge's annotations against the
  mode of its others. Both need at least two annotations per pair.
- Probability of preferring the longer output: over the pairs whose outputs differ by more than
  30 characters, the share where the preferred output is the longer (the first annotation of
  each pair, as alpaca_eval's drop_duplicates keeps it). Likewise for lists (alpaca_eval's
  `contains_list` patterns), over the pairs where exactly one output holds a list.
- Proba. prefer 1: 2 - the mean preference; # parsed: the annotations with a preference.

Uncertainties: the standard error alpaca_eval itself computes for an agreement (`sem_samples`:
the standard error of the per-pair scores, ddof 1, averaged over the index combinations), for
human agreement, bias and variance; the standard error of a proportion (the same sem of its 0/1
indicators) for the length, list and position preferences. Spearman and Pearson correlations of
the leaderboard need the generators of each pair (another file, alpaca_farm_human_annotations)
and are not computed.

A judge of this project answers every pair in both orders: its annotations are those two orders
(index 0: output_1 shown as (a); index 1: output_2 shown as (a)). alpaca_eval instead asks 4
seeds, each showing a random order; for a deterministic judge the human agreement is the same in
expectation, while our variance is the disagreement between the two orders themselves."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np

from .crossannotations import KEYS, NAN, CrossAnnotationError, count, gold, gold_rows, pref, select, table

SIGNIFICANT_LENGTH = 30  # characters: alpaca_eval's `significant_delta_length`
MODE_SEED = 123  # alpaca_eval's `_random_mode` tie-break
# alpaca_eval's assumptions for the people (constants.ALPACAFARM_GOLD_CROSSANNOTATIONS): 9.2 minutes
# for 15 pairs, $0.3 a pair
HUMAN_SECONDS_PER_EXAMPLE = 9.2 * 60 / 15
HUMAN_PRICE_PER_EXAMPLE = 0.3
# alpaca_eval's utils.contains_list: bullets, numbered and lettered items at a line's start
_LISTS = [re.compile(p, re.MULTILINE) for p in (r"^\s*[\*\•\-]\s*[^\w]*\w+", r"^\s*\d+[\.\)]\s*[^\w]*\w+",
                                                 r"^\s*[a-zA-Z][\.\)]\s+[^\w]*\w+")]
# ---------------------------------------------------------------------------------------------
# Annotation tables: pair key -> preferences in index order (NaN where unparsed)


# ---------------------------------------------------------------------------------------------
# The scoring rule ("absolute") and its Bayes estimator


def _aspref(v: float) -> float:
    return 1.5 if v == 0 else v  # a legacy 0 is a tie


def random_mode(values) -> float:
    """The mode; between several, the one pandas' Series.sample(1, random_state=123) picks from
    the sorted modes (a permutation by numpy's legacy RandomState, as pandas draws it)."""
    counts = Counter(v for v in values if not math.isnan(v))
    if not counts:
        return NAN
    top = max(counts.values())
    modes = sorted(v for v, c in counts.items() if c == top)
    if len(modes) > 1:
        return modes[int(np.random.RandomState(MODE_SEED).choice(len(modes), size=1, replace=False)[0])]
    return modes[0]


def bayes_estimator(values) -> float:
    values = [_aspref(v) for v in values]
    if all(math.isnan(v) or v in (0.0, 1.0, 2.0, 1.5) for v in values):
        return random_mode(values)
    present = [v for v in values if not math.isnan(v)]
    return float(np.median(present)) if present else NAN


def _estimates(annotations: dict, indices) -> dict:
    chosen = {}
    for key, values in annotations.items():
        picked = [values[i] for i in indices if i < len(values)]
        if picked:
            chosen[key] = bayes_estimator(picked)
    return chosen


def _sem(values) -> float:
    present = [v for v in values if not math.isnan(v)]
    if len(present) < 2:
        return NAN
    return float(np.std(present, ddof=1) / math.sqrt(len(present)))


def _mean(values) -> float:
    present = [v for v in values if not math.isnan(v)]
    return sum(present) / len(present) if present else NAN


def _score_pairs(first: dict, second: dict) -> dict:
    common = [k for k in first if k in second]
    per_pair = [1 - abs(second[k] - first[k]) for k in common]
    score = _mean(per_pair)
    return {"score": score, "error": 1 - score, "sem_samples": _sem(per_pair), "counts": len(common)}


def agreement(first: dict, second: dict | None = None, n1: int | None = 1, n2: int | None = None,
              same: bool | None = None) -> dict:
    """alpaca_eval's Analyzer.agreement_of_annotations on two tables (second None: the same)."""
    second = first if second is None else second
    same = (second is first) if same is None else same
    if same and n1 is None:
        raise ValueError("n1 cannot be None when an annotator is compared with itself")
    first = select(first, n1, drop_extra=False)
    max1 = max(count(v) for v in first.values())  # alpaca_eval's n_annotated: parsed annotations
    n1 = n1 or max1
    if n1 > max1:
        raise ValueError(f"n1={n1} is larger than the most annotations a pair has ({max1})")
    if same:
        n2 = n2 or (max1 - n1)
    second = select(second, n2, drop_extra=False)
    max2 = max(count(v) for v in second.values())
    n2 = n2 or max2
    if n2 > max2:
        raise ValueError(f"n2={n2} is larger than the most annotations a pair has ({max2})")
    results: dict = {}
    for idcs_1 in combinations(range(max1), n1):
        for idcs_2 in combinations(range(max2), n2):
            if same:
                if set(idcs_1) & set(idcs_2):
                    continue
                if (idcs_2, idcs_1) in results:
                    results[(idcs_1, idcs_2)] = results[(idcs_2, idcs_1)]
                    continue
            results[(idcs_1, idcs_2)] = _score_pairs(_estimates(first, idcs_1), _estimates(second, idcs_2))
    if not results:
        raise ValueError("no two disjoint sets of annotations to compare")
    runs = list(results.values())
    # a plain mean (a NaN in any combination makes it NaN, as pandas' sum of Series does)
    out = {field: sum(r[field] for r in runs) / len(runs) for field in ("score", "error", "sem_samples", "counts")}
    scores = [r["score"] for r in runs]
    out["sem_annotators"] = _sem(scores)
    return out


# ---------------------------------------------------------------------------------------------
# Preference for length, lists and position


def contains_list(text: str) -> bool:
    return any(p.search(text) for p in _LISTS)


def _best_worse(rows):
    """(best, worse) output of the first annotation of each pair, as alpaca_eval reads a preference
    (a tie or a missing one counts output_2 as both, so it never enters a count)."""
    seen = set()
    for row in rows:
        key = tuple(row[k] for k in KEYS)
        if key in seen:
            continue
        seen.add(key)
        p = pref(row.get("preference"))
        best = row["output_1"] if 1 <= p < 1.5 else row["output_2"]
        worse = row["output_1"] if 1.5 < p <= 2 else row["output_2"]
        yield best, worse


def _proportion(hits: list[bool]) -> tuple[float, float, int]:
    if not hits:
        return NAN, NAN, 0
    p = sum(hits) / len(hits)
    return p, _sem([float(h) for h in hits]), len(hits)


def prefer_longer(rows) -> tuple[float, float, int]:
    """(probability, its standard error, pairs counted): the preferred output is the longer one,
    among pairs whose outputs differ by more than 30 characters."""
    hits = [len(b) > len(w) for b, w in _best_worse(rows) if abs(len(b) - len(w)) > SIGNIFICANT_LENGTH]
    return _proportion(hits)


def prefer_lists(rows) -> tuple[float, float, int]:
    """(probability, standard error, pairs counted): the preferred output holds the list, among
    pairs where exactly one output holds one."""
    hits = []
    for best, worse in _best_worse(rows):
        b, w = contains_list(best), contains_list(worse)
        if b != w:
            hits.append(b)
    return _proportion(hits)


# ---------------------------------------------------------------------------------------------
# The leaderboard row


def longest_rows(gold_rows) -> list[dict]:
    """alpaca_eval's `longest` annotator: every annotation replaced by the longer output (output_2
    when the lengths are equal)."""
    return [{**r, "preference": 1 if len(r["output_1"]) > len(r["output_2"]) else 2} for r in gold_rows]


def metrics(rows, gold_table: dict, *, humans: bool = False, price_per_example: float | None = None,
            seconds_per_example: float | None = None) -> dict:
    """One evaluator's row of alpaca_eval's evaluator leaderboard, with uncertainties. `rows`:
    the evaluator's annotation records (all indices of a pair in index order, e.g. index 0 of
    every pair first); humans: the rows are the people's own (leave-one-out, bias 0)."""
    annotations = table(rows)
    if humans:
        annotations = gold_table
    own = agreement(annotations, gold_table, n1=1, n2=None, same=humans)
    out = {"human_agreement": own["score"] * 100, "human_agreement_se": own["sem_samples"] * 100,
           "human_agreement_se_annotators": own["sem_annotators"] * 100, "pairs": own["counts"]}
    if humans:
        out["bias"], out["bias_se"] = 0.0, 0.0
    else:
        try:
            if max(len(v) for v in annotations.values()) < 2:  # alpaca_eval asserts several indices
                raise ValueError("one annotation per pair")
            b = agreement(annotations, gold_table, n1=None, n2=None, same=False)
            out["bias"], out["bias_se"] = b["error"] * 100, b["sem_samples"] * 100
        except (ValueError, ZeroDivisionError):
            out["bias"], out["bias_se"] = NAN, NAN
    try:
        v = agreement(annotations, None, n1=1, n2=None, same=True)
        out["variance"], out["variance_se"] = v["error"] * 100, v["sem_samples"] * 100
    except (ValueError, ZeroDivisionError):
        out["variance"], out["variance_se"] = NAN, NAN
    out["prefer_longer"], out["prefer_longer_se"], out["prefer_longer_pairs"] = prefer_longer(rows)
    out["prefer_lists"], out["prefer_lists_se"], out["prefer_lists_pairs"] = prefer_lists(rows)
    prefs = [pref(r.get("preference")) for r in rows]
    out["prefer_1"] = 2 - _mean(prefs)
    out["prefer_1_se"] = _sem(prefs)
    out["parsed"] = count(prefs)
    out["price_per_1000"] = None if price_per_example is None else price_per_example * 1000
    out["seconds_per_1000"] = None if seconds_per_example is None else seconds_per_example * 1000
    return out


def anchors(crossannotation_rows) -> dict[str, dict]:
    """The two evaluators that need no model: the people themselves and `longest`."""
    kept = gold_rows(crossannotation_rows)
    table_ = gold(crossannotation_rows)
    return {
        "humans": metrics(kept, table_, humans=True, price_per_example=HUMAN_PRICE_PER_EXAMPLE,
                          seconds_per_example=HUMAN_SECONDS_PER_EXAMPLE),
        "longest": metrics(longest_rows(kept), table_, price_per_example=0.0, seconds_per_example=0.0),
    }


# ---------------------------------------------------------------------------------------------
# A judge of this project on the cross-annotated pairs


ORDER_INDEX = {"reference_first": 0, "model_first": 1}


def judge_rows(pair_list, verdict_rows) -> list[dict]:
    """The judge's annotation records in alpaca_eval's format: one per pair and order (index 0:
    output_1 shown as (a), all of them first; index 1: the swapped order), preference 1 + the
    verdict's score of output_2 (1, 1.5 for a tie, 2; None where no verdict was parsed)."""
    by_id = {p["id"]: p for p in pair_list}
    found = {(v["id"], v["order"]): v for v in verdict_rows}
    missing = [f"{p['id']} ({order})" for p in pair_list for order in ORDER_INDEX if (p["id"], order) not in found]
    if missing:
        raise CrossAnnotationError(f"the judge's verdicts lack {len(missing)} pair(s) and order(s): {', '.join(missing[:5])}")
    rows = []
    for order, index in ORDER_INDEX.items():
        for pid, pair in by_id.items():
            score = found[(pid, order)].get("model_score")
            rows.append({**{k: pair[k] for k in KEYS}, "preference": None if score is None else 1 + score,
                         "index": index})
    return rows


def restrict(crossannotation_rows, pair_list) -> list[dict]:
    """The people's records on the chosen pairs only (the anchors then stand on the judge's ground)."""
    wanted = {tuple(p[k] for k in KEYS) for p in pair_list}
    return [r for r in crossannotation_rows if tuple(r[k] for k in KEYS) in wanted]


# ---------------------------------------------------------------------------------------------
# The people's file: alpaca_eval's hub dataset, pinned by revision and SHA-256

# ---------------------------------------------------------------------------------------------
# The validation table: our measurements beside the leaderboard's published rows

PUBLISHED = Path(__file__).resolve().parent.parent / "data" / "judges" / "alpaca_eval_evaluators.yaml"
COLUMNS = (  # (key, header, with its standard error, digits)
    ("human_agreement", "human agreement %", True, 1), ("bias", "bias %", True, 1), ("variance", "variance %", True, 1),
    ("prefer_longer", "P(prefer longer)", True, 2), ("prefer_lists", "P(prefer lists)", True, 2),
    ("prefer_1", "P(prefer output_1)", True, 2), ("parsed", "# parsed", False, 0),
    ("price_per_1000", "$ / 1000 pairs", False, 2), ("seconds_per_1000", "s / 1000 pairs", False, 0),
)


def load_published(path: Path = PUBLISHED) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def report(judge_name: str, judge_metrics: dict, anchor_metrics: dict, published: dict, meta: dict) -> dict:
    """The validation record: the judge and the anchors measured here, the leaderboard's rows,
    and whether the anchors equal the leaderboard's (only meaningful on the whole published file)."""
    rows = [{"evaluator": judge_name, "source": "measured here", **judge_metrics}]
    rows += [{"evaluator": name, "source": "measured here", **m} for name, m in anchor_metrics.items()]
    rows += [{"evaluator": name, "source": "alpaca_eval v0.6.6 (published)", **values}
             for name, values in published["evaluators"].items()]
    check = {}
    if meta.get("full_published_set"):
        for name, m in anchor_metrics.items():
            expected = published["evaluators"][name]["human_agreement"]
            check[name] = {"measured": m["human_agreement"], "published": expected,
                           "equal": round(m["human_agreement"], 2) == round(expected, 2)}
    return {"judge": judge_name, **meta, "anchors_vs_published": check or None, "rows": rows}


def _cell(row: dict, key: str, with_se: bool, digits: int) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:,.{digits}f}"
    se = row.get(f"{key}_se")
    if with_se and se is not None and not math.isnan(se):
        text += f" ± {se:.{digits}f}"
    return text


def markdown(record: dict) -> str:
    lines = [f"# {record['judge']} against people: alpaca_eval's human cross-annotations", "",
             f"{record['pairs_judged']} of the file's {record['pairs_in_file']} pairs"
             f"{' (limit ' + str(record['limit']) + ')' if record.get('limit') is not None else ''}, "
             f"each judged in both orders; people's file: {record['crossannotations']}.", "",
             "| evaluator | source | " + " | ".join(h for _, h, _, _ in COLUMNS) + " |",
             "|---|---|" + "---:|" * len(COLUMNS)]
    for row in record["rows"]:
        lines.append(f"| {row['evaluator']} | {row['source']} | "
                     + " | ".join(_cell(row, k, se, d) for k, _, se, d in COLUMNS) + " |")
    lines += ["", "± : the standard error alpaca_eval computes (over pairs) for the agreements, and of the "
              "proportion for the preferences. Bias and variance are errors (lower is better); the judge's "
              "variance is the disagreement between its two orders. Spearman/Pearson correlations are not "
              "computed (they need each pair's generator)."]
    if record.get("method") == "logprob":
        lines += ["", f"{record['judge']} is a log-prob judge: both orders carry one verdict (its margin averaged over the "
                  "two orders, as on the grid), so its variance is 0 by construction; its position bias is in "
                  "results/tables/judge_preferences.md and the win-rate table's order-flip rate."]
    check = record.get("anchors_vs_published")
    if check:
        lines += [""] + [f"- anchor {n}: measured {c['measured']:.2f}, published {c['published']:.2f}: "
                         f"{'equal' if c['equal'] else 'DIFFERENT: the metric code or the file is not theirs'}"
                         for n, c in check.items()]
    else:
        lines += ["", "The anchors (humans, longest) stand on this subset or file, not the whole published one, "
                  "so they need not equal the leaderboard's rows."]
    return "\n".join(lines) + "\n"


def csv_rows(record: dict) -> list[dict]:
    keys = ["evaluator", "source"] + [k for col, _, se, _ in COLUMNS for k in ([col, f"{col}_se"] if se else [col])]
    return [{k: row.get(k) for k in keys} for row in record["rows"]]


def human_agreement(judge_name: str, results: str | Path = "results", full_only: bool = True) -> float | None:
    """A judge's measured human agreement (%) from its validation record, or None where it has
    none yet (full_only: unless measured on alpaca_eval's whole published file, so that a
    caption never quotes a limited first look or a test fixture as the judge's agreement)."""
    return human_agreement_of(Path(results) / "judges" / judge_name / "validation.json", full_only)


def human_agreement_of(path: str | Path, full_only: bool = True) -> float | None:
    """human_agreement from one validation record (results/judges/<judge>/validation.json)."""
    path = Path(path)
    if not path.exists():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if full_only and not record.get("full_published_set"):
        return None
    return next(r["human_agreement"] for r in record["rows"] if r["source"] == "measured here"
                and r["evaluator"] == path.parent.name)


# ---------------------------------------------------------------------------------------------
# Planning


def validated_judges(config: dict) -> list[str]:
    """The judges a config validates: judge_validation.judges, or, where it names none, every
    judge of its grid (evaluation and figures), so that whoever judges the grid is measured."""
    section = config.get("judge_validation")
    if section is None:
        return []
    if section.get("judges"):
        return list(section["judges"])
    from .config import verdict_cells

    return list(dict.fromkeys(j for j, _, _, _ in verdict_cells(config)))


# ---------------------------------------------------------------------------------------------
# The same judges on the paper's own pairs: position and length preferences per test set


def grid_preferences(cells) -> list[dict]:
    """Per judge, test set and difficulty ('all' and each level), over the verdicts of every
    model against every reference: how often a decisive verdict names position (a), how often
    the verdict flips when the outputs swap places, and how often a decisive verdict prefers the
    longer output where the two differ by more than 30 characters (alpaca_eval's rule). Each
    order's own verdict counts (for a log-prob judge, what that order alone said), so a judge's
    position bias shows even where its debiased verdict hides it.

    cells: [(judge, test set, verdict rows, {item: (model chars, reference chars)}, {item: difficulty})]."""
    groups: dict = {}
    for judge_name, testset, rows, lengths, difficulty in cells:
        by_item: dict = {}
        for row in rows:
            by_item.setdefault(row["id"], {})[row["order"]] = row
        for item, orders in by_item.items():
            for level in ["all", *([str(difficulty[item])] if item in difficulty else [])]:
                g = groups.setdefault((judge_name, testset, level), {"verdicts": 0, "a": [], "flip": [], "longer": []})
                scores = {}
                for order, row in orders.items():
                    g["verdicts"] += 1
                    said = row.get("order_preference", row.get("preference"))
                    if said in ("a", "b"):
                        g["a"].append(said == "a")
                    scores[order] = row.get("order_model_score", row.get("model_score"))
                    if scores[order] in (0.0, 1.0) and item in lengths:
                        model_chars, reference_chars = lengths[item]
                        if abs(model_chars - reference_chars) > SIGNIFICANT_LENGTH:
                            g["longer"].append((model_chars > reference_chars) == (scores[order] == 1.0))
                if all(scores.get(o) is not None for o in ORDER_INDEX):
                    g["flip"].append(scores["reference_first"] != scores["model_first"])
    out = []
    for (judge_name, testset, level), g in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] != "all",
                                                                               kv[0][2])):
        a, a_se, decisive = _proportion(g["a"])
        flip, flip_se, both = _proportion(g["flip"])
        longer, longer_se, differing = _proportion(g["longer"])
        out.append({"judge": judge_name, "testset": testset, "difficulty": level, "verdicts": g["verdicts"],
                    "prefer_a": a, "prefer_a_se": a_se, "decisive": decisive, "flip_rate": flip, "flip_rate_se": flip_se,
                    "items_both_orders": both, "prefer_longer": longer, "prefer_longer_se": longer_se,
                    "length_differing": differing})
    return out


PREFERENCE_COLUMNS = (("prefer_a", "P(prefers position (a))", "decisive"), ("flip_rate", "P(flips with the order)",
                      "items_both_orders"), ("prefer_longer", "P(prefers the longer)", "length_differing"))


def preferences_markdown(rows: list[dict]) -> str:
    lines = ["# Judges on the paper's pairs: position and length preferences", "",
             "| judge | test set | difficulty | verdicts | " + " | ".join(h for _, h, _ in PREFERENCE_COLUMNS) + " |",
             "|---|---|---|---:|" + "---:|" * len(PREFERENCE_COLUMNS)]
    for r in rows:
        cells = []
        for key, _, n in PREFERENCE_COLUMNS:
            cells.append("–" if math.isnan(r[key]) else f"{r[key]:.2f} ± {0.0 if math.isnan(r[key + '_se']) else r[key + '_se']:.2f} (n {r[n]})")
        lines.append(f"| {r['judge']} | {r['testset']} | {r['difficulty']} | {r['verdicts']} | " + " | ".join(cells) + " |")
    if not rows:
        lines.append("\n(no verdicts planned)")
    lines += ["", "Each order's own verdict counts. An unbiased judge names (a) half the time; people, on "
              "alpaca_eval's pairs, prefer the longer output 0.64 of the time (results/judges/*/validation.md). "
              "± is the standard error of the proportion; n the verdicts or items it is taken over."]
    return "\n".join(lines) + "\n"


# the paper's judge roles (config names) -> the leaderboard row of the closest snapshot it lists
ROLE_EVALUATORS = {"gpt-3.5-turbo": "chatgpt", "claude-2": "claude", "gpt-4": "gpt4", "text-davinci-003": "text_davinci_003"}


def agreement_note(judge_name: str, measured: float | None, published: Path = PUBLISHED) -> str:
    """A caption's phrase on a judge's human agreement: `measured` (human_agreement, on alpaca_eval's
    whole file) or 'not measured yet', beside the published figure of the original it stands in for."""
    ours = f"{measured:.1f} %" if measured is not None else "not measured yet"
    original = ROLE_EVALUATORS.get(judge_name)
    if original is None:
        return f"human agreement of {judge_name}: {ours}"
    row = load_published(published)["evaluators"][original]
    return (f"human agreement of {judge_name} as judged here: {ours}; alpaca_eval's published {original}: "
            f"{row['human_agreement']:.1f} % (people: 65.7 %)")
