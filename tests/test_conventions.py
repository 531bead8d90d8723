"""Snakemake's conventions, checked with its own tools: `snakemake --lint` passes on every
shipped config, every rule says in one line what it makes (its docstring, which `snakemake
--list-rules` shows), and Snakefile and rules/ are as snakefmt formats them. .ci/run checks the
formatting from a venv of its own (snakefmt brings its own black, which the lock does not hold);
here only where snakefmt is installed."""

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

CONFIGS = ["config.yaml", "configs/paper.yaml", "configs/released.yaml", "configs/medinstruct-52k.yaml"]


def snakemake(*args):
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("configfile", CONFIGS)
def test_snakemake_lint_passes(configfile):
    result = snakemake("--lint", "--configfile", configfile)
    assert result.returncode == 0, f"snakemake --lint --configfile {configfile}:\n{result.stdout[-6000:]}{result.stderr[-3000:]}"


# the USMLE rules exist only where a config plans the benchmark: both configs have it
@pytest.mark.parametrize("configfile", ["config.yaml", "configs/paper.yaml"])
def test_every_rule_has_a_one_line_docstring(configfile):
    result = snakemake("--list-rules", "--configfile", configfile)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    # `name (docstring)`; a rule without one prints its bare name, a second docstring line its own line
    not_described = [line for line in lines if not re.fullmatch(r"\w+ \(\S.*\)", line)]
    assert len(lines) > 20 and not not_described, f"rules without a one-line docstring: {not_described}"


def test_rules_are_formatted_by_snakefmt():
    pytest.importorskip("snakefmt", reason="snakefmt is not installed here (.ci/run checks the formatting)")
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "--diff", "Snakefile", "rules/"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"run `snakefmt Snakefile rules/`:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
