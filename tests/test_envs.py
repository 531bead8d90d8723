"""The conda environments under envs/ agree with pyproject.toml, and every rule names one."""

import os
import re
import subprocess
import sys
import tomllib

import yaml

from conftest import ROOT

# the workflow engine runs on the submit host; jobs reach it through the script preamble
NOT_IN_JOB_ENVS = {"snakemake"}


def requirement(line):
    """(normalized name, version specifier) of a requirement such as 'rouge-score>=0.1.2'."""
    name, spec = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)", line).groups()
    return re.sub(r"[-_.]+", "-", name).lower(), spec.replace(" ", "")


def pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return dict(requirement(d) for d in project["dependencies"])


def env_packages(path):
    """pip packages of one environment file (conda packages other than python/pip are not used)."""
    env = yaml.safe_load(path.read_text())
    packages, conda = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            packages.update(requirement(p) for p in dep["pip"])
        else:
            conda.append(dep)
    assert all(re.match(r"(python|pip)\b", c) for c in conda), f"{path.name}: conda packages {conda} bypass pyproject"
    return packages


def test_every_env_package_is_a_pyproject_dependency_with_the_same_version():
    wanted = pyproject_dependencies()
    for path in sorted((ROOT / "envs").glob("*.yaml")):
        for name, spec in env_packages(path).items():
            assert name in wanted, f"envs/{path.name}: {name} is not a dependency in pyproject.toml"
            assert spec == wanted[name], f"envs/{path.name}: {name}{spec}, pyproject.toml says {name}{wanted[name]}"


def test_every_pyproject_dependency_is_in_some_env():
    in_envs = set()
    for path in (ROOT / "envs").glob("*.yaml"):
        in_envs |= set(env_packages(path))
    missing = set(pyproject_dependencies()) - in_envs - NOT_IN_JOB_ENVS
    assert not missing, f"pyproject.toml dependencies in no envs/*.yaml: {sorted(missing)}"


def test_envs_use_the_projects_python_and_install_the_package():
    minimum = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"].removeprefix(">=")
    for path in sorted((ROOT / "envs").glob("*.yaml")):
        env = yaml.safe_load(path.read_text())
        assert f"python={minimum}" in env["dependencies"], path.name
        deploy = path.with_suffix(".post-deploy.sh")
        assert "pip install --no-deps --editable ." in deploy.read_text(), deploy.name


def test_every_rule_that_runs_a_script_names_an_existing_env():
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        for rule, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, re.M):
            if "script:" in body or "shell:" in body:
                assert "conda:" in body, f"rules/{smk.name}: rule {rule} names no conda env"
    cluster = (ROOT / "rules" / "cluster.smk").read_text()
    kinds = re.search(r'for kind in \(([^)]*)\)', cluster).group(1)
    for kind in re.findall(r'"(\w+)"', kinds):
        assert (ROOT / "envs" / f"{kind}.yaml").exists(), kind


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
