"""Which generator answers by which method, read from the config (used by rules/usmle.smk to
build the DAG and by the config check, so a bad request fails before any job runs)."""

from __future__ import annotations

from ..config import ConfigError

METHODS = ("generation", "loglik")


def generator_kind(config: dict, name: str) -> str | None:
    """'alpaca' (a fine-tuned model or a backbone, the project's Alpaca prompt), 'chat' (an
    LLM through the LLM layer), or None (imported outputs only: it cannot answer questions)."""
    spec = config["generators"][name]
    if "model" in spec or "backbone" in spec:
        return "alpaca"
    if "llm" in spec:
        return "chat"
    return None


def is_local(config: dict, name: str) -> bool:
    spec = config["generators"][name]
    return "llm" not in spec or config["llms"][spec["llm"]]["provider"] == "local"


def generators_by_method(config: dict, source: str = "config") -> dict[str, list[str]]:
    """{method: [generator, ...]} for the config's usmle section ({} without one). A method's
    own `generators` list is explicit: naming an API model for log-likelihood, or an
    import-only generator anywhere, is an error. Otherwise the shared list (default: every
    generator that can answer) is used, and log-likelihood quietly leaves out API models."""
    section = config.get("usmle")
    if not section:
        return {}
    answering = [g for g in config["generators"] if generator_kind(config, g)]
    shared = section.get("generators", answering)
    plan = {}
    for method, settings in section.get("methods", {}).items():
        explicit = "generators" in settings
        names = settings.get("generators", shared)
        key = f"usmle.methods.{method}.generators" if explicit else "usmle.generators"
        for n, name in enumerate(names):
            if name not in config["generators"]:
                defined = ", ".join(sorted(config["generators"]))
                raise ConfigError(f"{source}: '{key}.{n}' names generator '{name}', which is not defined under 'generators' (defined: {defined})")
            if not generator_kind(config, name):
                raise ConfigError(f"{source}: '{key}.{n}': generator '{name}' only imports outputs and cannot answer questions")
            if method == "loglik" and explicit and not is_local(config, name):
                raise ConfigError(f"{source}: '{key}.{n}': log-likelihood needs a local model; generator '{name}' is an API model "
                                  "(ask it by generation instead)")
        plan[method] = [g for g in names if method != "loglik" or is_local(config, g)]
    # `usmle: {generators: []}` switches the benchmark off (a --configfile cannot delete the default's section)
    return plan if any(plan.values()) else {}
