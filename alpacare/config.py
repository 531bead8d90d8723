"""Config validation: the JSON Schema in schemas/, plus the cross-references a schema cannot
express. Every message names the key, so a typo fails before any job runs."""

from __future__ import annotations

import itertools
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


def _schema(schema_path: str | Path = SCHEMA) -> dict:
    return yaml.safe_load(Path(schema_path).read_text())


def validate(config: dict, schema_path: str | Path = SCHEMA, source: str = "config") -> dict:
    check_removed(config, source)
    validator = _with_defaults(jsonschema.Draft202012Validator)(_schema(schema_path))
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
    fill_figure_judges(config, source)
    check_references(config, source)
    return config


# results/figures/<name>.png and results/tables/<name>.* are also the results tables' own names
RESERVED_FIGURE_NAMES = ("winrates", "winrates_by_difficulty", "judge_agreement", "usmle", "ledger")


def fill_figure_judges(config: dict, source: str = "config") -> None:
    """A figure without `judges` is drawn by evaluation's judges: those of them the paper drew
    it with (`paper_judges`), or all of them where none is, so the judge named on the command
    line (`--config 'evaluation={judges: [...]}'`) draws every figure and a paper judge the run
    did not ask is named as missing (alpacare.figures.missing_judges)."""
    for name, figure in config.get("figures", {}).items():
        if name in RESERVED_FIGURE_NAMES:
            raise ConfigError(f"{source}: 'figures.{name}': the name is taken by a results table "
                              f"({', '.join(RESERVED_FIGURE_NAMES)}); name the figure otherwise (figure2, ...)")
        if "judges" not in figure:
            judges = (config.get("evaluation") or {}).get("judges")
            if not judges:
                raise ConfigError(f"{source}: 'figures.{name}' names no judges and there is no evaluation.judges to take")
            figure["judges"] = [j for j in figure.get("paper_judges", []) if j in judges] or list(judges)


def verdict_cells(config: dict) -> list[tuple[str, str, str, str]]:
    """Every (judge, reference, test set, model) the config plans, once, in order: the grid of
    `evaluation`, then each paper figure's grid (`figures:`)."""
    grids = [config.get("evaluation") or {}, *config.get("figures", {}).values()]
    cells = itertools.chain.from_iterable(
        itertools.product(*(grid.get(k, []) for k in ("judges", "references", "testsets", "models"))) for grid in grids)
    return list(dict.fromkeys(cells))


def compared_outputs(config: dict) -> list[tuple[str, str]]:
    """Every (generator, test set) whose outputs a planned verdict compares."""
    return list(dict.fromkeys((g, t) for _, reference, t, model in verdict_cells(config) for g in (model, reference)))


def check_references(config: dict, source: str = "config") -> None:
    """Names used in one section must be defined in another."""

    def need(kind: str, name: str, where: str):
        if name not in config.get(kind, {}):
            defined = ", ".join(sorted(config.get(kind, {}))) or "none"
            raise ConfigError(f"{source}: '{where}' names {kind[:-1]} '{name}', which is not defined under '{kind}' (defined: {defined})")

    for name, spec in config.get("backbones", {}).items():
        if "adapter" in spec and "hf" not in spec:
            raise ConfigError(f"{source}: 'backbones.{name}.adapter': a LoRA adapter is merged into a hub base model (hf)")
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
    if si.get("prompt") == "alpacare-official" and si.get("prompting") == "fields":
        raise ConfigError(f"{source}: 'selfinstruct.prompt': alpacare-official is AlpaCare's list prompt; it needs prompting: list")
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
    grids = {"evaluation": config.get("evaluation") or {}}
    grids.update((f"figures.{name}", grid) for name, grid in config.get("figures", {}).items())
    for where, grid in grids.items():
        for kind, section in (("models", "generators"), ("references", "generators"), ("judges", "judges"),
                              ("paper_judges", "judges"), ("testsets", "testsets")):
            for n, name in enumerate(grid.get(kind, [])):
                need(section, name, f"{where}.{kind}.{n}")
    for n, name in enumerate((config.get("judge_validation") or {}).get("judges", [])):
        need("judges", name, f"judge_validation.judges.{n}")
    for name, figure in config.get("figures", {}).items():
        if figure.get("paper_figure"):
            from .figures import PublishedError, read_published

            try:
                published = read_published(figure["published"])
            except PublishedError as err:
                raise ConfigError(f"{source}: 'figures.{name}.published': {err}") from None
            wanted = figure["paper_figure"]
            for n, key in enumerate([wanted] if isinstance(wanted, str) else wanted):
                where = f"figures.{name}.paper_figure" + ("" if isinstance(wanted, str) else f".{n}")
                if key not in published["figures"]:
                    raise ConfigError(f"{source}: '{where}': {key!r} is not in "
                                      f"{figure['published']} (known: {', '.join(published['figures'])})")
    for generator, testset in compared_outputs(config):
        spec = config["generators"][generator]
        if not any(k in spec for k in ("llm", "model", "backbone", "path")) and testset not in spec.get("import", {}):
            raise ConfigError(f"{source}: 'generators.{generator}' only imports outputs and has none for test set "
                              f"{testset}, which a planned comparison needs")

    if config.get("usmle"):
        from .usmle.plan import generators_by_method

        generators_by_method(config, source)


def read(path: str | Path) -> dict:
    """One config file as it is written (no `extends:` resolved, no defaults)."""
    try:
        config = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config is a mapping of sections, got {type(config).__name__}")
    return config


def merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`: mappings key by key, anything else replaced (as Snakemake merges
    a --configfile over another)."""
    merged = dict(base)
    for key, value in over.items():
        merged[key] = merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def resolve_extends(config: dict, source: str = "config", seen: tuple = (), root: str | Path = ".") -> dict:
    """A config is the whole configuration unless it says `extends: <file>` (a path from the
    working directory, like every path in a config): then it is that file's config (itself
    perhaps extending another) with this one merged over it; a top-level section set to null
    is dropped."""
    parent = config.get("extends")
    if parent is None:
        return config
    if not isinstance(parent, str):
        raise ConfigError(f"{source}: 'extends' names one config file, got {parent!r}")
    path = Path(root, parent)
    if path.resolve() in seen:
        raise ConfigError(f"{source}: 'extends: {parent}' comes back to a config already being extended")
    base = resolve_extends(read(path), parent, (*seen, path.resolve()), root)
    merged = merge(base, {k: v for k, v in config.items() if k != "extends"})
    # a section set to null is left out (`usmle: null`: no USMLE benchmark in this run)
    return {k: v for k, v in merged.items() if v is not None}


def load(path: str | Path, root: str | Path = ".") -> dict:
    """A config file as Snakemake sees it given with --configfile from `root`: extended, validated."""
    path = Path(root, path)
    return validate(resolve_extends(read(path), str(path), (path.resolve(),), root), source=str(path))


_SCALARS = {"boolean": bool, "integer": int, "number": (int, float), "null": type(None)}


def _typing_errors(errors):
    """'type' errors, including those inside oneOf/anyOf branches."""
    for err in errors:
        if err.validator == "type":
            yield err
        yield from _typing_errors(err.context or [])


def type_command_line(config: dict, overrides: dict, schema_path: str | Path = SCHEMA) -> dict:
    """Values given with `snakemake --config 'llm={replay_only: true}'` arrive as strings
    (Snakemake reads nested values with YAML's base loader): read as YAML each such string that
    the schema wants as a boolean, number or null, so the command line means what it says.
    Only values the command line set are touched; a quoted "true" in a config file stays an error."""

    def given(path) -> bool:
        node = overrides
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return isinstance(node, str)

    validator = jsonschema.Draft202012Validator(_schema(schema_path))
    for _ in range(1000):  # one value per round: a fix can change which oneOf branch applies
        for err in _typing_errors(validator.iter_errors(config)):
            wanted = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
            if not isinstance(err.instance, str) or not given(err.absolute_path):
                continue
            try:
                value = yaml.safe_load(err.instance)
            except yaml.YAMLError:
                continue
            if any(isinstance(value, _SCALARS[t]) and not (t in ("integer", "number") and isinstance(value, bool))
                   for t in wanted if t in _SCALARS):
                *parents, last = err.absolute_path
                node = config
                for part in parents:
                    node = node[part]
                node[last] = value
                break
        else:
            return config
    return config
