"""Published files: pinned by commit and checksum, downloaded only when asked, refused unless
their bytes match (SHA-256 where the pin was taken from the bytes, the git blob id otherwise)."""

import hashlib
import re

import pytest

from alpacare import published
from alpacare.config import load
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


def test_pinned_row_counts_are_the_files_own():
    from alpacare.io import read_records

    layout = reference_layout()
    if not layout:
        pytest.skip("reference data not present")
    for rel, path in layout.items():
        assert published.rows(f"alpacare:{rel}") == len(read_records(path)), rel
    assert published.rows("alpacare:data/MedInstruct-test.jsonl") == 216   # the paper's Table 1 says 217
    assert all(published.rows(f"{source}:{path}") for source in ("alpacare", "alpaca_eval") for path in published.FILES[source]
               if path.endswith(("_output.jsonl", "seed_0.json", "model_outputs.json")))


# What the README and the configs say a published file holds: (the claim, in words, with its number(s)
# as groups) -> the pinned file(s) the numbers count, in order
CLAIMS = {
    r"(\d+(?:,\d{3})*) \+ (\d+(?:,\d{3})*) \+ (\d+(?:,\d{3})*) items": ["alpacare:data/reference_outputs/gpt-4/iCliniq_output.jsonl",
                                               "alpacare:data/MedInstruct-test.jsonl",
                                               "alpaca_eval:results/text_davinci_003/model_outputs.json"],
    r"iCliniq's (\d+(?:,\d{3})*) sampled questions|the (\d+(?:,\d{3})*) questions, asked": ["alpacare:data/reference_outputs/gpt-4/iCliniq_output.jsonl"],
    r"AlpacaFarm's (\d+(?:,\d{3})*)|the same (\d+(?:,\d{3})*) (?:rows|instructions|outputs)": [
        "alpaca_eval:results/text_davinci_003/model_outputs.json"],
    r"MedInstruct-test's (\d+(?:,\d{3})*)|(\d+(?:,\d{3})*) MedInstruct-test": ["alpacare:data/MedInstruct-test.jsonl"],
    r"(\d+(?:,\d{3})*) clinician seeds": ["alpacare:data/med_seed.json"],
    r"(?:hold|holds) (?:the paper's )?(\d+(?:,\d{3})*) (?:records|instructions)": ["alpacare:data/MedInstruct-52k.json"],
}


def test_counts_in_the_readme_and_configs_are_the_pinned_files():
    from conftest import ROOT

    found = dict.fromkeys(CLAIMS, 0)
    for path in [ROOT / "README.md", *sorted((ROOT / "configs").glob("*.yaml"))]:
        text = " ".join(path.read_text().replace("#", " ").split())   # comments and prose, lines joined
        for claim, refs in CLAIMS.items():
            for match in re.finditer(claim, text):
                numbers = [int(g.replace(",", "")) for g in match.groups() if g]
                assert numbers == [published.rows(ref) for ref in refs][:len(numbers)], f"{path.name}: '{match[0]}'"
                found[claim] += 1
        # MedInstruct-test holds 216 rows: 217 is the paper's Table 1, and may be quoted only as such
        for match in re.finditer(r"\b217\b", text):
            assert "Table 1" in text[max(0, match.start() - 60):match.end() + 60], f"{path.name}: '{text[match.start() - 60:match.end() + 20]}'"
    assert all(found.values()), [claim for claim, n in found.items() if not n]   # every claim is still made somewhere
    config = load("configs/paper.yaml", ROOT)
    for name, spec in config["datasets"].items():
        if "count" in spec:
            assert spec["count"] == published.rows(spec["url"]), name
