"""The configuration reference (docs/config.md), generated from schemas/config.schema.yaml so
that the two cannot drift: every key with its type, default and description.

    python -m alpacare.configdoc                        print the reference
    python -m alpacare.configdoc -o docs/config.md      write it (also: snakemake --cores 1 docs/config.md, rule config_reference)
    python -m alpacare.configdoc --check docs/config.md exit 1, naming the difference, if the file is stale

tests/test_configdoc.py fails when a schema key has no description or docs/config.md is stale.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import SCHEMA

COMMAND = "python -m alpacare.configdoc -o docs/config.md"

HEADER = f"""# Configuration reference

Generated from `schemas/config.schema.yaml` by `{COMMAND}`
(or `snakemake --cores 1 docs/config.md`); do not edit it by hand: a test fails when this file
and the schema disagree. `config.yaml` is a commented example; a config given with
`--configfile` is the whole configuration (or says `extends:`).

In a key's path, `<name>` stands for a name you choose (it becomes a wildcard in `results/`
paths), `<key>` for a map's key as its description says, and `[]` for each item of a list.
"""


@dataclass
class Key:
    path: str
    type: str
    default: str  # as YAML/JSON would write it; "" when the schema gives none
    required: bool
    description: str


def _resolve(node: dict, schema: dict) -> dict:
    """The node with its $ref followed; keys beside the $ref (a default, a description) win."""
    while "$ref" in node:
        target = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type(node: dict, schema: dict) -> str:
    if "enum" in node:
        return " | ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    kind = node.get("type")
    if isinstance(kind, list):
        return " | ".join(kind)
    if kind == "array":
        items = _resolve(node.get("items", {}), schema)
        return f"list of {_type(items, schema)}" if items else "list"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict) and "properties" not in node:
        return f"map of {_type(_resolve(node['additionalProperties'], schema), schema)}"
    if kind:
        return kind
    return "object" if "properties" in node else "any"


def _properties(node: dict) -> dict:
    """Named properties, those that only a oneOf/anyOf/allOf branch defines included."""
    props = dict(node.get("properties", {}))
    for branch in node.get("oneOf", []) + node.get("anyOf", []) + node.get("allOf", []):
        for name, sub in branch.get("properties", {}).items():
            props.setdefault(name, sub)
    return props


def walk(node: dict, path: str, schema: dict, required: bool = False):
    """Every key a config can hold under `node`, depth first, in schema order."""
    node = _resolve(node, schema)
    if path:
        default = json.dumps(node["default"], ensure_ascii=False) if "default" in node else ""
        description = " ".join(str(node.get("description", "")).split())
        yield Key(path, _type(node, schema), default, required, description)
    prefix = f"{path}." if path else ""
    for name, sub in _properties(node).items():
        yield from walk(sub, prefix + name, schema, name in node.get("required", []))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        # named entries of a section (propertyNames: $defs/name) are wildcards; any other map's keys are not
        placeholder = "<name>" if "propertyNames" in node else "<key>"
        yield from walk(extra, prefix + placeholder, schema)
    for pattern, sub in node.get("patternProperties", {}).items():
        yield from walk(sub, f"{prefix}<key matching {pattern}>", schema)
    items = node.get("items")
    if isinstance(items, dict) and _properties(_resolve(items, schema)):
        yield from walk(items, f"{path}[]", schema)


def keys(schema: dict) -> list[Key]:
    return list(walk(schema, "", schema))


def undocumented(schema: dict) -> list[str]:
    """Keys a user can write whose schema entry says nothing about them."""
    return [k.path for k in keys(schema) if not k.description]


def _inline(text: str) -> str:
    """Schema text as markdown: outside code spans, `<` escaped (or `<name>` would be read as
    an HTML tag and vanish) and `*` (or two of them would make italics)."""
    parts = re.split(r"(`[^`]*`)", text)
    for n in range(0, len(parts), 2):  # the even parts are outside code spans
        parts[n] = parts[n].replace("<", r"\<").replace("*", r"\*")
    return "".join(parts)


def _cell(text: str) -> str:
    """A table cell: `|` escaped too, inside code spans as well (GFM splits the row first)."""
    return _inline(text).replace("|", r"\|")


def _section(path: str) -> str:
    """The top-level key a path is under; a pattern key is its own section (its regex may hold dots)."""
    return path if path.startswith("<") else re.split(r"[.\[]", path, maxsplit=1)[0]


def render(schema: dict) -> str:
    sections: dict[str, list[Key]] = {}
    for key in keys(schema):
        sections.setdefault(_section(key.path), []).append(key)
    lines = [HEADER]
    for name, (top, *rows) in sections.items():
        lines += [f"## `{name}`", "", _inline(top.description), ""]
        facts = [f"Type: {_inline(top.type)}."] + ([f"Default: `{top.default}`."] if top.default else [])
        facts += ["Required."] if top.required else []
        lines += [" ".join(facts), ""]
        if rows:
            lines += ["| key | type | default | description |", "|---|---|---|---|"]
            for key in rows:
                default = f"`{key.default}`" if key.default else ("required" if key.required else "")
                lines.append(f"| {_cell(f'`{key.path}`')} | {_cell(key.type)} | {_cell(default)} | {_cell(key.description)} |")
            lines.append("")
    return "\n".join(lines)


def stale(path: Path, expected: str) -> str | None:
    """Why the file at `path` is not `expected` (None when it is): the first differing lines."""
    if not path.is_file():
        return f"{path} does not exist"
    actual = path.read_text()
    if actual == expected:
        return None
    diff = difflib.unified_diff(actual.splitlines(), expected.splitlines(), str(path), "the schema's reference", lineterm="", n=0)
    return f"{path} differs from what the schema gives:\n" + "\n".join(list(diff)[:20])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alpacare.configdoc", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-o", "--out", type=Path, help="write the reference to this file instead of printing it")
    where.add_argument("--check", type=Path, metavar="PATH", help="exit 1 if PATH is not the reference the schema gives now")
    args = parser.parse_args(argv)
    text = render(yaml.safe_load(Path(SCHEMA).read_text()))
    if args.check:
        problem = stale(args.check, text)
        if problem:
            print(f"{problem}\nregenerate it: {COMMAND}", file=sys.stderr)
            return 1
        return 0
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
