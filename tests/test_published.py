"""Published files: pinned by commit and checksum, downloaded only when asked, refused unless
their bytes match (SHA-256 where the pin was taken from the bytes, the git blob id otherwise)."""

import hashlib

import pytest

from alpacare import published
from alpacare.published import PublishedError, fetch, git_blob_id, resolve
from conftest import reference_layout


def test_every_pin_is_commit_pinned_and_well_formed():
    for source, files in published.FILES.items():
        assert len(published.SOURCES[source].commit) == 40
        for path, (blob, sha256) in files.items():
            pin = resolve(f"{source}:{path}")
            assert f"/{published.SOURCES[source].commit}/{path}" in pin.url
            assert len(blob) == 40 and (sha256 is None or len(sha256) == 64)


def test_pins_match_the_reference_copies():
    layout = reference_layout()
    if not layout:
        pytest.skip("reference data not present")
    for rel, path in layout.items():
        data = path.read_bytes()
        pin = resolve(f"alpacare:{rel}")
        assert pin.git_blob == git_blob_id(data), rel
        assert pin.sha256 == hashlib.sha256(data).hexdigest(), rel


def test_git_blob_id_is_gits():
    assert git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"   # git's well-known empty blob
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_a_mirrored_file_is_fetched_and_checked(mirror, monkeypatch, tmp_path):
    base, _ = mirror
    monkeypatch.setenv("ALPACARE_MIRROR", base)
    fetch("alpacare:data/MedInstruct-test.jsonl", tmp_path / "test.jsonl")
    assert len((tmp_path / "test.jsonl").read_text().splitlines()) == 216


def test_an_altered_file_is_refused_and_nothing_is_written(mirror, monkeypatch, tmp_path):
    base, root = mirror
    pin = resolve("alpacare:data/reference_outputs/gpt-4/medsi_output.jsonl")
    served = root / pin.url.removeprefix("https://")
    original = served.read_bytes()
    try:
        served.write_bytes(original.replace(b"the", b"teh", 1))
        monkeypatch.setenv("ALPACARE_MIRROR", base)
        with pytest.raises(PublishedError, match=r"git blob id .* expected 2f5d8033.*refusing"):
            fetch(pin.ref, tmp_path / "out.jsonl")
        assert not (tmp_path / "out.jsonl").exists()
    finally:
        served.write_bytes(original)


def test_unknown_files_are_named_with_near_misses():
    with pytest.raises(PublishedError, match="no pinned file 'data/model_outputs/AlpaCare-7b/iCliniq/seed_0.json'"):
        resolve("alpacare:data/model_outputs/AlpaCare-7b/iCliniq/seed_0.json")   # the repository spells it model_ouputs
    with pytest.raises(PublishedError, match="names no published file"):
        resolve("nowhere:data/x.json")
    assert not published.is_reference("https://example.org/x.json")
    assert not published.is_reference("file:///tmp/x.json")
    assert published.is_reference("stanford_alpaca:alpaca_data.json")


def test_params_carry_the_pin():
    assert published.params("alpacare:data/MedInstruct-52k.json") == {
        "url": published.SOURCES["alpacare"].url("data/MedInstruct-52k.json"),
        "git_blob": "9ea73eb818d01af2e98f237b52f0f7974d632829", "sha256": None}
    assert published.params("https://example.org/x.json") == {"url": "https://example.org/x.json"}
