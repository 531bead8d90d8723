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


def test_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('[{"topic": "Caf\xe9"}]'.encode("latin-1"))
    with pytest.raises(SeedError, match=r"latin1\.json: not UTF-8 text \(byte 0xe9 at offset 15\)"):
        load_seeds([path])


@pytest.mark.parametrize("content, message", [("", "the file is empty"), ("  \n", "the file is empty"),
                                              ("[]", "the list of seed tasks is empty")])
def test_empty_file_or_list_names_the_file(tmp_path, content, message):
    good = write(tmp_path, [GOOD])
    empty = tmp_path / "empty.json"
    empty.write_text(content)
    with pytest.raises(SeedError, match=rf"empty\.json: {message}"):
        load_seeds([good, empty])  # one good file does not hide an empty one


def test_seed_errors_are_value_errors(tmp_path):
    assert issubclass(SeedError, ValueError)


# --- official seeds by name: downloaded from a local HTTP server standing in for GitHub ------------

import hashlib
import http.server
import socket
import threading

from pathlib import Path

from alpacare.published import git_blob_id, resolve
from alpacare.seeds import OFFICIAL_SEEDS


@pytest.fixture
def served(tmp_path):
    """A directory served over HTTP on 127.0.0.1; yields (directory, base URL)."""
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def mirror_of(directory: Path, base: str, monkeypatch, data: bytes):
    """AlpaCare's seed file served at its pinned address through ALPACARE_MIRROR."""
    pin = resolve(OFFICIAL_SEEDS["alpacare-official"])
    dest = directory / pin.url.removeprefix("https://")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    monkeypatch.setenv("ALPACARE_MIRROR", base)


def test_official_seeds_are_pinned_to_alpacare_file():
    pin = resolve(OFFICIAL_SEEDS["alpacare-official"])
    assert pin.url.startswith("https://raw.githubusercontent.com/XZhang97666/AlpaCare/b469c41")
    assert pin.url.endswith("/data/med_seed.json")
    data = reference_file("med_seed.json").read_bytes()
    assert pin.sha256 == hashlib.sha256(data).hexdigest()
    assert pin.git_blob == git_blob_id(data)


def test_official_seeds_download_and_checksum(served, monkeypatch):
    directory, base = served
    mirror_of(directory, base, monkeypatch, reference_file("med_seed.json").read_bytes())
    seeds = load_seeds(["alpacare-official", ROOT / "seeds" / "medical_seed_tasks.json"])
    assert len(seeds) == 167 + 50 and seeds[0]["instruction"].startswith("Explain what multiple sclerosis is")


def test_official_seeds_with_another_checksum_are_refused(served, monkeypatch):
    directory, base = served
    mirror_of(directory, base, monkeypatch,
              reference_file("med_seed.json").read_bytes().replace(b"Neurology", b"Neurologx", 1))
    with pytest.raises(SeedError, match=r"seeds 'alpacare-official': .* has git blob id [0-9a-f]{40} .*expected 881aa63e"):
        load_seeds(["alpacare-official"])


def test_official_seeds_offline_say_what_to_do(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ALPACARE_MIRROR", f"http://127.0.0.1:{port}")
    with pytest.raises(SeedError, match=r"seeds 'alpacare-official': could not download .*list its path under 'seeds:'"):
        load_seeds(["alpacare-official"])


def test_unknown_name_is_a_missing_file(tmp_path):
    with pytest.raises(SeedError, match="alpacare-oficial: seed file not found .*known seed set names: alpacare-official"):
        load_seeds(["alpacare-oficial"])
