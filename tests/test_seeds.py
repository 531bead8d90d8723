import json

import pytest

from alpacare.seeds import SeedError, load_seeds
from conftest import ROOT, reference_file


def test_project_seeds_cover_the_space():
    seeds = load_seeds([ROOT / "seeds" / "medical_seed_tasks.json"])
    assert len(seeds) >= 30
    assert len({s["topic"] for s in seeds}) >= 8
    assert len({s["view"] for s in seeds}) >= 5
    assert len({s["type"] for s in seeds}) >= 8
    assert {s["difficulty"] for s in seeds} == {1, 2, 3, 4, 5}


def test_alpacare_seed_file_loads():
    seeds = load_seeds([reference_file("med_seed.json")])
    assert len(seeds) == 167
    assert all(isinstance(s["difficulty"], int) for s in seeds)


def write(tmp_path, content):
    path = tmp_path / "seeds.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


GOOD = {"topic": "Cardiology", "view": "Patient", "type": "Open Q&A", "difficulty": 2,
        "instruction": "What does high blood pressure do to the heart?", "input": "<noinput>"}


def test_bad_json_names_the_file_and_line(tmp_path):
    path = write(tmp_path, '[{"topic": "x",}]')
    with pytest.raises(SeedError, match=r"seeds\.json: not valid JSON.*line 1"):
        load_seeds([path])


def test_missing_field_names_item_and_field(tmp_path):
    item = dict(GOOD)
    del item["view"]
    path = write(tmp_path, [GOOD, item])
    with pytest.raises(SeedError, match=r"seeds\.json: item 1: missing field 'view'"):
        load_seeds([path])


@pytest.mark.parametrize("difficulty", [0, 6, "7", "hard", True])
def test_difficulty_outside_range(tmp_path, difficulty):
    path = write(tmp_path, [dict(GOOD, difficulty=difficulty)])
    with pytest.raises(SeedError, match=r"item 0: field 'difficulty' must be 1-5"):
        load_seeds([path])


def test_string_difficulty_and_empty_input_are_normalized(tmp_path):
    path = write(tmp_path, [dict(GOOD, difficulty="4", input="")])
    (seed,) = load_seeds([path])
    assert seed["difficulty"] == 4 and seed["input"] == "<noinput>"


def test_missing_file(tmp_path):
    with pytest.raises(SeedError, match="nope.json: seed file not found"):
        load_seeds([tmp_path / "nope.json"])
