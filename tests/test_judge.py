import math

import pytest

from alpacare.judge import build_requests, model_score, parse_reply, preference_from_logprobs, verdicts, win_rate
from alpacare.llm import Response


@pytest.mark.parametrize("reply,expected", [
    ("Output (a)", "a"), ("output (b)", "b"), ("Tie", "tie"), ("Output (b) is better.", "b"),
    ("Output a", "a"), ("I cannot decide", None), ("Output (a) and Output (b) are equal", None), ("", None),
])
def test_parse_reply(reply, expected):
    assert parse_reply(reply) == expected


def test_model_score_depends_on_order():
    assert model_score("b", "reference_first") == 1.0
    assert model_score("a", "reference_first") == 0.0
    assert model_score("a", "model_first") == 1.0
    assert model_score("tie", "model_first") == 0.5
    assert model_score(None, "model_first") is None


def test_logprob_preference_and_tie_margin():
    assert preference_from_logprobs([-1.0, -2.0], 0.0) == "a"
    assert preference_from_logprobs([-2.0, -1.0], 0.0) == "b"
    assert preference_from_logprobs([-1.0, -1.2], 0.5) == "tie"


def outputs(texts):
    return [{"id": i, "instruction": f"q{i}", "input": "", "output": t} for i, t in enumerate(texts)]


def test_both_orders_are_asked():
    tagged = build_requests(outputs(["m0", "m1"]), outputs(["r0", "r1"]), judge_model="j", method="reply", max_tokens=16)
    assert [tag for tag, _ in tagged] == [(0, "reference_first"), (0, "model_first"), (1, "reference_first"), (1, "model_first")]
    first = tagged[0][1].messages[-1][1]
    assert first.index("r0") < first.index("m0")
    second = tagged[1][1].messages[-1][1]
    assert second.index("m0") < second.index("r0")
    assert tagged[0][1].temperature == 0.0


def test_win_rate_averages_orders_and_counts_unparseable():
    tags = [(0, "reference_first"), (0, "model_first"), (1, "reference_first"), (1, "model_first"),
            (2, "reference_first"), (2, "model_first")]
    replies = ["Output (b)", "Output (a)",   # item 0: model wins both -> 1
               "Output (b)", "Output (b)",   # item 1: position bias -> 0.5
               "Tie", "gibberish"]           # item 2: unparseable -> not scored
    rows = verdicts([(t, Response(text=r)) for t, r in zip(tags, replies)], "reply", 0.0)
    result = win_rate(rows)
    assert result["win_rate"] == 75.0
    assert result["items"] == 3 and result["scored_items"] == 2 and result["unparseable_replies"] == 1


def test_win_rate_with_nothing_scored():
    rows = verdicts([((0, "reference_first"), Response(text="?")), ((0, "model_first"), Response(text="?"))], "reply", 0.0)
    assert math.isnan(win_rate(rows)["win_rate"])


def test_logprob_judge_cancels_a_constant_position_bias():
    # the judge always prefers (a) by ~1.5 nats; the model's answer is a little better in both orders
    tagged = [((0, "reference_first"), Response(text="Output (a)", choice_logprobs=[-3.9, -5.5])),
              ((0, "model_first"), Response(text="Output (a)", choice_logprobs=[-3.9, -5.8])),
              ((1, "reference_first"), Response(text="Output (a)", choice_logprobs=[-3.0, -4.9])),
              ((1, "model_first"), Response(text="Output (a)", choice_logprobs=[-3.0, -4.4]))]
    rows = verdicts(tagged, "logprob", tie_margin=0.0)
    assert [r["model_margin"] for r in rows] == [0.15, 0.15, -0.25, -0.25]
    assert [r["preference"] for r in rows] == ["b", "a", "a", "b"]
    assert win_rate(rows)["win_rate"] == 50.0 and win_rate(rows)["order_agreement"] == 1.0
    assert [r["preference"] for r in verdicts(tagged, "logprob", tie_margin=0.3)] == ["tie"] * 4
