"""Config validation: the JSON Schema in schemas/, plus the cross-references a schema cannot
express. Every message names the key, so a typo fails before any job runs."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    pass


def _with_defaults(cls):
    """A validator that also fills in the schema's defaults (as Snakemake's validate does)."""
    validate_properties = cls.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = sub["default"]
        yield from validate_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": properties})


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


# keys that were removed, and what to do instead: named before the schema's generic "unknown key"
REMOVED = {
    ("llm", "circuit_breaker", "seconds"): (
        "was removed: the circuit breaker now counts failed attempts, never time, so slow or hanging calls "
        "no longer stop a stage (a hang is bounded by llms.<name>.timeout.read). Delete `seconds`; "
        "`failures` (in a row) stays, and `rate` / `window` open it on a failure rate over recent attempts"),
}


def check_removed(config: dict, source: str = "config") -> None:
    for path, advice in REMOVED.items():
        node = config
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node:
            raise ConfigError(f"{source}: '{_key(path)}' {advice}")


def validate(config: dict, schema_path: str | Path = SCHEMA, source: str = "config") -> dict:
    check_removed(config, source)
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = errors[0]
        where = _key(err.absolute_path)
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            known = ", ".join(sorted(err.schema.get("properties", {})))
            raise ConfigError(f"{source}: unknown key '{_key([*err.absolute_path, extra[0]])}' (known here: {known})")
        if err.validator in ("oneOf", "anyOf"):
            raise ConfigError(f"{source}: '{where}' must have exactly one of the forms documented in the schema: {err.message}")
        raise ConfigError(f"{source}: '{where}': {err.message}")
    check_references(config, source)
    return config


def check_references(config: dict, source: str = "config") -> None:
    """Names used in one section must be defined in another."""

    def need(kind: str, name: str, where: str):
        if name not in config.get(kind, {}):
            defined = ", ".join(sorted(config.get(kind, {}))) or "none"
            raise ConfigError(f"{source}: '{where}' names {kind[:-1]} '{name}', which is not defined under '{kind}' (defined: {defined})")

    for name, spec in config.get("llms", {}).items():
        if spec["provider"] == "local":
            if "backbone" not in spec:
                raise ConfigError(f"{source}: 'llms.{name}' uses provider local and needs 'backbone'")
            need("backbones", spec["backbone"], f"llms.{name}.backbone")
        elif "model" not in spec:
            raise ConfigError(f"{source}: 'llms.{name}' uses provider {spec['provider']} and needs 'model'")
    si = config.get("selfinstruct", {})
    for role in ("teacher", "responder"):
        if role in si:
            need("llms", si[role], f"selfinstruct.{role}")
    if si.get("prompting") == "fields" and config["llms"][si["teacher"]]["provider"] != "local":
        raise ConfigError(f"{source}: 'selfinstruct.prompting': fields (constrained decoding) needs a local teacher; "
                          "API teachers use prompting: list")
    for name, spec in config.get("datasets", {}).items():
        if spec.get("source") == "selfinstruct" and "selfinstruct" not in config:
            raise ConfigError(f"{source}: 'datasets.{name}' comes from selfinstruct, but there is no 'selfinstruct' section")
    for n, name in enumerate(config.get("stats", {}).get("datasets", [])):
        need("datasets", name, f"stats.datasets.{n}")
    for name, spec in config.get("models", {}).items():
        need("backbones", spec["backbone"], f"models.{name}.backbone")
        for n, part in enumerate(spec["data"]):
            need("datasets", part["dataset"], f"models.{name}.data.{n}.dataset")
    for name, spec in config.get("generators", {}).items():
        if "model" in spec:
            need("models", spec["model"], f"generators.{name}.model")
        if "backbone" in spec:
            need("backbones", spec["backbone"], f"generators.{name}.backbone")
        if "llm" in spec:
            need("llms", spec["llm"], f"generators.{name}.llm")
        for testset in spec.get("import", {}):
            need("testsets", testset, f"generators.{name}.import.{testset}")
    for name, spec in config.get("judges", {}).items():
        need("llms", spec["llm"], f"judges.{name}.llm")
        if spec["method"] == "logprob" and config["llms"][spec["llm"]]["provider"] != "local":
            raise ConfigError(f"{source}: 'judges.{name}': method logprob needs a local llm (API judges use method reply)")
    ev = config.get("evaluation", {})
    for kind, section in (("models", "generators"), ("references", "generators"), ("judges", "judges"), ("testsets", "testsets")):
        for n, name in enumerate(ev.get(kind, [])):
            need(section, name, f"evaluation.{kind}.{n}")
    for name in ev.get("models", []) + ev.get("references", []):
        spec = config["generators"][name]
        if not any(k in spec for k in ("llm", "model", "backbone", "path")):
            missing = [t for t in ev.get("testsets", []) if t not in spec.get("import", {})]
            if missing:
                raise ConfigError(f"{source}: 'generators.{name}' only imports outputs and has none for test set(s) {', '.join(missing)}")

    if config.get("usmle"):
        from .usmle.plan import generators_by_method

        generators_by_method(config, source)


def load(path: str | Path) -> dict:
    try:
        config = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return validate(config or {}, source=str(path))
