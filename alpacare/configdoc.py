"""The configuration reference (docs/config.md), generated from schemas/config.schema.yaml so
that the two cannot drift: every key with its type, default and description.

    python -m alpacare.configdoc > docs/config.md      (or: snakemake --cores 1 docs/config.md)
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import SCHEMA

HEADER = """# Configuration reference

Generated from `schemas/config.schema.yaml` by `python -m alpacare.configdoc` (`snakemake --cores 1
docs/config.md`); a test fails when this file and the schema disagree. `config.yaml` is a commented
example; a config given with `--configfile` is the whole configuration (or says `extends:`).
`<name>` stands for a name you choose: it becomes a wildcard in `results/` paths.
"""


@dataclass
class Key:
    path: str
    type: str
    default: str
    description: str


def _resolve(node: dict, schema: dict) -> dict:
    while "$ref" in node:
        target = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type(node: dict) -> str:
    if "enum" in node:
        return " \\| ".join(json.dumps(v) for v in node["enum"])
    if "const" in node:
        return json.dumps(node["const"])
    kind = node.get("type")
    if isinstance(kind, list):
        return " \\| ".join(kind)
    if kind == "array":
        items = node.get("items", {})
        return f"list of {items.get('type', 'object')}" if isinstance(items, dict) else "list"
    if kind:
        return kind
    if "oneOf" in node or "anyOf" in node:
        return "one of the forms below"
    return "object" if "properties" in node else "any"


def _default(node: dict) -> str:
    if "default" not in node:
        return ""
    return "`" + json.dumps(node["default"], ensure_ascii=False) + "`"


def walk(node: dict, path: str, schema: dict):
    """Every documented key under `node`, depth first."""
    node = _resolve(node, schema)
    if path:
        yield Key(path, _type(node), _default(node), " ".join(str(node.get("description", "")).split()))
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}" if path else name, schema)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from walk(extra, f"{path}.<name>" if path else "<name>", schema)
    for pattern, sub in node.get("patternProperties", {}).items():
        if sub.get("properties") or sub.get("additionalProperties"):
            yield from walk(sub, f"{path}.<{pattern}>", schema)
    items = node.get("items")
    if isinstance(items, dict) and (_resolve(items, schema).get("properties")):
        yield from walk(items, f"{path}[]", schema)


def keys(schema: dict) -> list[Key]:
    return list(walk(schema, "", schema))


def undocumented(schema: dict) -> list[str]:
    """Keys a user can write whose schema entry says nothing about them."""
    return [k.path for k in keys(schema) if not k.description]


def render(schema: dict) -> str:
    lines = [HEADER]
    sections: dict[str, list[Key]] = {}
    for key in keys(schema):
        sections.setdefault(key.path.split(".")[0].split("[")[0], []).append(key)
    for section, rows in sections.items():
        lines += [f"## `{section}`", ""]
        if rows[0].description:
            lines += [rows[0].description, ""]
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for key in rows:
            text = key.description.replace("|", "\\|")
            lines.append(f"| `{key.path}` | {key.type} | {key.default.replace('|', chr(92) + '|')} | {text} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    sys.stdout.write(render(yaml.safe_load(Path(SCHEMA).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
