"""The configuration reference (docs/config.md): every schema key is described, the file is what
the schema gives now (CI's drift check), and every key the shipped configs use is in it."""

import copy
import re
import subprocess
import sys

import pytest
import yaml

from alpacare import configdoc
from alpacare.config import SCHEMA, read
from conftest import ROOT

DOC = ROOT / "docs" / "config.md"


@pytest.fixture(scope="module")
def schema():
    return yaml.safe_load(SCHEMA.read_text())


# a small schema with each shape the walk meets: a nested object, a map of named entries
# (propertyNames), a plain map, list items, a $ref, an enum, a default, a required key, a pipe
SMALL = {
    "$defs": {"name": {"type": "string"}, "limits": {"type": "object", "properties": {
        "seconds": {"type": "number", "default": 5, "description": "wait | give up"}}}},
    "type": "object",
    "properties": {
        "run": {"type": "object", "description": "how it runs", "default": {}, "properties": {
            "mode": {"enum": ["fast", "slow"], "default": "fast", "description": "speed"},
            "limits": {"$ref": "#/$defs/limits", "description": "time limits"}}},
        "llms": {"type": "object", "description": "endpoints by name", "propertyNames": {"$ref": "#/$defs/name"},
                 "additionalProperties": {"type": "object", "description": "one endpoint", "required": ["model"], "properties": {
                     "model": {"type": "string", "description": "the model id, e.g. `a|b`"},
                     "labels": {"type": "object", "description": "labels", "additionalProperties": {
                         "type": "string", "description": "a label"}}}}},
        "data": {"type": "array", "description": "the mixture, see <name>", "items": {"type": "object", "description": "one part",
                 "properties": {"dataset": {"type": "string", "description": "a dataset"}}}},
    },
}


def table_rows(text: str) -> dict[str, list[str]]:
    """key path -> the cells of its table row, split where GFM splits them (at unescaped pipes)."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].strip("`")] = cells
    return rows


def test_every_schema_key_has_a_description(schema):
    missing = configdoc.undocumented(schema)
    assert not missing, "schema keys without a description (schemas/config.schema.yaml): " + ", ".join(missing)


def test_undocumented_names_keys_at_every_depth():
    small = copy.deepcopy(SMALL)
    del small["properties"]["llms"]["additionalProperties"]["properties"]["labels"]["additionalProperties"]["description"]
    del small["$defs"]["limits"]["properties"]["seconds"]["description"]
    del small["properties"]["data"]["items"]["properties"]["dataset"]["description"]
    assert configdoc.undocumented(small) == ["run.limits.seconds", "llms.<name>.labels.<key>", "data[].dataset"]


def test_render_a_small_schema():
    text = configdoc.render(SMALL)
    rows = table_rows(text)
    # every key a config can hold, in schema order, each with its dotted path
    assert list(rows) == ["run.mode", "run.limits", "run.limits.seconds", "llms.<name>", "llms.<name>.model",
                          "llms.<name>.labels", "llms.<name>.labels.<key>", "data[]", "data[].dataset"]
    # key | type | default | description, and a pipe in a cell escaped rather than splitting the row
    assert all(len(cells) == 4 for cells in rows.values()), rows
    assert rows["run.mode"] == ["`run.mode`", r'`"fast"` \| `"slow"`', '`"fast"`', "speed"]
    assert rows["run.limits.seconds"] == ["`run.limits.seconds`", "number", "`5`", r"wait \| give up"]
    assert rows["llms.<name>.model"] == ["`llms.<name>.model`", "string", "required", r"the model id, e.g. `a\|b`"]
    assert rows["llms.<name>.labels"][1] == "map of string"
    # a $ref keeps the description written beside it
    assert rows["run.limits"][3] == "time limits"
    # a section per top-level key: its description and type above its table; <name> in prose escaped
    assert ("## `run`\n\nhow it runs\n\nType: object. Default: `{}`.\n\n"
            "| key | type | default | description |\n|---|---|---|---|\n| `run.mode` |") in text
    assert "the mixture, see \\<name>\n\nType: list of object." in text
    # no blank line inside a table: every row is in the unbroken run of rows under a table's header
    tables = re.findall(r"^\| key \| type \| default \| description \|\n\|---\|---\|---\|---\|\n((?:\|.*\n)+)", text, re.M)
    assert sum(len(table.splitlines()) for table in tables) == len(rows)


def test_the_reference_is_current(schema):
    problem = configdoc.stale(DOC, configdoc.render(schema))
    assert problem is None, f"{problem}\nregenerate it: {configdoc.COMMAND}"


def test_check_names_the_difference_and_out_writes(tmp_path, capsys):
    out = tmp_path / "docs" / "config.md"
    assert configdoc.main(["-o", str(out)]) == 0
    assert configdoc.main(["--check", str(out)]) == 0
    out.write_text(out.read_text().replace("| `llm.max_retries` | integer | `5` |", "| `llm.max_retries` | integer | `3` |"))
    capsys.readouterr()
    assert configdoc.main(["--check", str(out)]) == 1
    err = capsys.readouterr().err
    assert "-| `llm.max_retries` | integer | `3` |" in err and "+| `llm.max_retries` | integer | `5` |" in err
    assert configdoc.COMMAND in err
    assert configdoc.main(["--check", str(tmp_path / "absent.md")]) == 1


def test_the_module_command_checks_the_committed_file():
    done = subprocess.run([sys.executable, "-m", "alpacare.configdoc", "--check", "docs/config.md"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def documented_path(parent: str, key: str, documented: set[str]) -> str | None:
    """The reference's path for `key` under `parent`: the key itself, a placeholder, or a pattern it matches."""
    prefix = f"{parent}." if parent else ""
    for path in (prefix + key, prefix + "<name>", prefix + "<key>"):
        if path in documented:
            return path
    for path in documented:
        pattern = re.fullmatch(re.escape(prefix) + r"<key matching (.+)>", path)
        if pattern and re.search(pattern.group(1), key):
            return path
    return None


def undocumented_uses(node, path: str, documented: set[str]) -> list[str]:
    """Keys in a config (at `path` of the reference) that the reference does not list."""
    if not any(p.startswith((f"{path}.", f"{path}[]")) for p in documented) and path:
        return []  # a value the reference describes as a whole (a map of strings, data_files)
    if isinstance(node, list):
        return [m for item in node for m in undocumented_uses(item, f"{path}[]", documented)]
    if not isinstance(node, dict):
        return []
    missing = []
    for key, value in node.items():
        found = documented_path(path, str(key), documented)
        if found is None:
            missing.append(f"{path}.{key}" if path else str(key))
        else:
            missing += undocumented_uses(value, found, documented)
    return missing


SHIPPED_CONFIGS = ["config.yaml", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").glob("*.yaml"))]


@pytest.mark.parametrize("config", SHIPPED_CONFIGS)
def test_every_key_a_shipped_config_uses_is_in_the_reference(config):
    text = DOC.read_text()
    documented = set(table_rows(text)) | set(re.findall(r"^## `([^`]+)`$", text, re.M))
    used = read(ROOT / config)
    assert used, config
    missing = undocumented_uses(used, "", documented)
    assert not missing, f"{config} uses keys that docs/config.md does not list: {', '.join(missing)}"
