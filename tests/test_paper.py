"""configs/paper.yaml plans the paper: every cell of Figures 2-6 (read from a real dry run's
planned verdict files), the baselines from pinned checkpoints or released outputs, the released
training data, AlpaCare's own prompts, judges that still answer, and medAlpaca's USMLE table."""

import re
import subprocess
import sys

import pytest

from alpacare.config import load
from alpacare.usmle import scores
from conftest import ROOT, copy_project

REFERENCES = ["text-davinci-003", "gpt-3.5-turbo", "gpt-4", "claude-2"]
MEDICAL_7B = ["alpacare-llama-7b", "alpaca-llama-7b", "chatdoctor-7b", "medalpaca-7b", "pmc-llama-7b", "baize-healthcare-7b"]
# The paper's figures, as the paper draws them: (figure, test sets, references, judges, models); the
# addition (llama2_13b) holds the cells of no figure of the paper. tests/test_paper_figures.py checks
# each figure's whole layout in both paper configs.
TESTSETS = ["icliniq", "medinstruct-test", "alpacafarm"]
BACKBONES_7B = ["alpacare-llama-7b", "alpaca-llama-7b", "alpacare-llama-2-7b", "alpaca-llama-2-7b"]
FIGURES = [
    ("figure2", ["icliniq", "medinstruct-test"], REFERENCES, ["gpt-3.5-turbo"], MEDICAL_7B),
    ("figure3", ["alpacafarm"], REFERENCES, ["gpt-3.5-turbo"], MEDICAL_7B),
    ("figure4", TESTSETS, ["gpt-4"], ["gpt-3.5-turbo"], BACKBONES_7B),
    ("figure10", TESTSETS, REFERENCES, ["gpt-3.5-turbo"], BACKBONES_7B),
    ("figure5", TESTSETS, ["gpt-4"], ["gpt-3.5-turbo", "claude-2"], MEDICAL_7B),
    ("figure11", TESTSETS, REFERENCES, ["claude-2"], MEDICAL_7B),
    ("figure6", TESTSETS, REFERENCES, ["gpt-3.5-turbo"],
     ["alpacare-llama-13b", "alpaca-llama-13b", "medalpaca-13b", "pmc-llama-13b"]),
    ("llama2_13b", TESTSETS, REFERENCES, ["gpt-3.5-turbo"], ["alpacare-llama-2-13b", "alpaca-llama-2-13b"]),
]
# snapshots their providers no longer serve (text-davinci-003 2024-01, gpt-3.5-turbo-0613 2024-09,
# claude-2.x 2025-07, gpt-4 / gpt-3.5-turbo(-0125) 2026-10)
RETIRED = re.compile(r"^(text-davinci-00[1-3]|gpt-3\.5-turbo(-\d{4})?|gpt-4(-0314|-0613)?|claude-(instant-)?[12](\.\d)?)$")


@pytest.fixture(scope="module")
def config():
    return load("configs/paper.yaml", ROOT)


@pytest.fixture(scope="module")
def planned_verdicts(tmp_path_factory):
    """(judge, reference, test set, model) of every verdict file the dry run plans."""
    project = copy_project(tmp_path_factory.mktemp("paper"))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "configs/paper.yaml"], cwd=project,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found = re.findall(r"^\s*output: results/verdicts/([^/\s]+)/([^/\s]+)/([^/\s]+)/([^/\s]+)\.jsonl$", result.stdout, re.M)
    assert found, result.stdout[-2000:]
    return set(found)


@pytest.mark.parametrize("figure, testsets, references, judges, models", FIGURES, ids=[f[0] for f in FIGURES])
def test_every_cell_of_the_papers_figures_is_planned(planned_verdicts, config, figure, testsets, references, judges, models):
    cells = {(j, r, t, m) for j in judges for t in testsets for r in references for m in models}
    missing = sorted(cells - planned_verdicts)
    assert not missing, f"{figure}: {len(missing)} cell(s) not planned, e.g. {missing[:5]}"
    grid = config["figures"][figure]   # the figure's own grid draws exactly these bars and panels
    assert (set(grid["testsets"]), set(grid["references"]), grid["judges"], set(grid["models"])) == \
        (set(testsets), set(references), judges, set(models))


def test_every_baseline_comes_from_a_pinned_checkpoint_or_released_outputs(config):
    hexes = re.compile(r"^[0-9a-f]{40}$")
    for name, spec in config["backbones"].items():
        assert hexes.match(spec.get("revision", "")), f"backbones.{name}: no pinned revision"
        if "adapter" in spec:
            assert hexes.match(spec["adapter"].get("revision", "")), f"backbones.{name}.adapter: no pinned revision"
    assert config["backbones"]["baize-healthcare-7b"]["adapter"]["hf"] == "project-baize/baize-healthcare-lora-7B"
    for name in {m for f in FIGURES for m in f[4]}:
        spec = config["generators"][name]
        if "import" in spec:   # released outputs, by pinned reference, for every test set
            assert all(ref.startswith("alpacare:data/model_ouputs/") for ref in spec["import"].values()), name
            assert set(spec["import"]) == {"icliniq", "medinstruct-test", "alpacafarm"}
        else:
            assert "model" in spec or "backbone" in spec, name
            assert spec.get("template", "alpaca") == "alpaca"   # asked as our models are


def test_training_data_is_the_released_files_checked_by_pin_and_count(config):
    from alpacare.published import resolve

    for name in ("medinstruct-52k", "alpaca-52k"):
        spec = config["datasets"][name]
        resolve(spec["url"])   # a pinned published file
        assert spec["count"] == 52002
    by_model = {name: [d["dataset"] for d in spec["data"]] for name, spec in config["models"].items()}
    for name, data in by_model.items():
        expected = ["medinstruct-selfinstruct"] if "selfinstruct" in name else \
            ["medinstruct-52k"] if name.startswith("alpacare") else ["alpaca-52k"]
        assert data == expected, name
    assert "alpacare-selfinstruct-llama-7b" in config["evaluation"]["models"]   # the regeneration, as an ablation


def test_prompts_are_alpacares_own_and_no_retired_model_is_called(config):
    assert config["selfinstruct"]["prompt"] == config["selfinstruct"]["system_prompt"] == "alpacare-official"
    for name, judge in config["judges"].items():
        assert judge["prompt"] == "alpacare-official", name
    for name, spec in config["llms"].items():
        assert not RETIRED.match(spec["model"]), f"llms.{name} calls the retired {spec['model']}"
    # the references are imported, never generated (their models are retired)
    for name in REFERENCES:
        assert not {"llm", "model", "backbone", "path"} & set(config["generators"][name]), name
    text = (ROOT / "configs/paper.yaml").read_text()
    for retired in ("text-davinci-003", "gpt-3.5-turbo-0613", "claude-2.0/2.1", "gpt-4(-0613)"):
        assert retired in text   # the config says which model each substitute stands for, and when it retired


def test_medalpacas_usmle_table_is_filled(config):
    published = {row["name"] for row in scores.load_published(ROOT / config["usmle"]["published"])["models"]}
    names = config["usmle"]["published_names"]
    assert set(names.values()) == {"LLaMA 7b", "LLaMA 13b", "MedAlpaca 7b", "MedAlpaca 13b", "Alpaca 7b naive",
                                   "Alpaca 13b naive"}
    assert set(names.values()) <= published
    assert set(names) <= set(config["usmle"]["generators"])
    for generator in names:
        assert "backbone" in config["generators"][generator]   # each from its pinned checkpoint


def test_the_generation_length_is_the_papers(config):
    assert config["generation"]["max_length"] == 2048
    assert config["generation"]["max_new_tokens"] >= config["generation"]["max_length"] // 2

