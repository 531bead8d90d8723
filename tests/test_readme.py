"""Every command the README shows works as typed: each line of every fenced bash block, and each
inline `snakemake ...` in its prose, is run in a copy of the project (snakemake as a dry run,
`-n`, since a real run would call an API, use a GPU or train), so a documented config, target
or `--config` override cannot drift from the workflow. A command that cannot run here is in
NOT_RUN_HERE with the reason; nothing else is skipped."""

import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT, copy_project

pytestmark = pytest.mark.workflow

# pattern (searched in the command) -> why the command is not run by this test
NOT_RUN_HERE = {
    r"^python3 -m venv\b": "creates the environment this test already runs in (.ci/run installs it with these lines)",
    r"^\. \.venv/bin/activate$": "activates that environment",
    r"^pip install\b": "installs; .ci/run runs the README's install and test command itself (test_ci_runs_the_readme_test_command)",
    r"^python -m pytest\b": "the test suite, which runs this test",
    r"--profile slurm": "needs a SLURM cluster: tests/test_slurm.py runs the profile on one",
    r"^python -m alpacare\.bundle (restore|verify)\b|--configfile results/bundle/": (
        "needs a replay bundle: tests/test_released.py builds one and runs the README's replay block verbatim"),
    r"\.\.\.": "an elided example, not a command",
    r"^bench/gpu_wheels\.sh\b": "fetches from PyPI and runs the GPU check: tests/test_gpu_check.py runs both",
    r"--report\b": ("collects a finished run's results (nothing to collect here): tests/test_rebuilds.py and "
                    "tests/test_released.py run it after a real run"),
}


def readme_commands(text: str) -> list[tuple[int, str]]:
    """(line number, command): the lines of fenced bash/sh blocks (split at `&&`, backslash
    continuations joined) and the inline `snakemake ...` spans of the prose (a span may wrap
    across lines)."""
    commands, fence, buffer, prose = [], None, "", []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip()
            prose.append("")
            continue
        prose.append(line if fence is None else "")
        if fence in ("bash", "sh", "shell", "console"):
            buffer += stripped.removesuffix("\\").strip() + " "
            if stripped.endswith("\\"):
                continue
            for part in buffer.split("&&"):
                if part.strip() and not part.strip().startswith("#"):
                    commands.append((number, part.strip().removeprefix("$ ")))
            buffer = ""
    joined = "\n".join(prose)
    for found in re.finditer(r"`(snakemake\s[^`]+)`", joined):
        commands.append((joined.count("\n", 0, found.start()) + 1, " ".join(found.group(1).split())))
    return sorted(commands)


COMMANDS = readme_commands((ROOT / "README.md").read_text())


def reason_not_run(command: str) -> str | None:
    return next((why for pattern, why in NOT_RUN_HERE.items() if re.search(pattern, command)), None)


def test_the_readme_shows_the_commands_this_test_runs():
    run_here = [c for _, c in COMMANDS if not reason_not_run(c)]
    # the documented entry points, each at least once
    assert any(c.startswith("snakemake --cores all --configfile configs/released.yaml --config 'evaluation={judges: [smollm2-logprob]}'")
               for c in run_here)
    assert any(" bundle " in f" {c} " for c in run_here) and any(c.startswith("snakemake -n --configfile configs/paper.yaml")
                                                                 for c in run_here)
    assert any("replay_only: true" in c for _, c in COMMANDS)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("readme"))


def as_dry_run(command: str) -> list[str]:
    words = shlex.split(command)
    if words[0] == "snakemake":
        return [sys.executable, "-m", "snakemake", "-n", *words[1:]]
    if words[0] in ("python", "python3"):
        return [sys.executable, *words[1:]]
    return words


@pytest.mark.parametrize("line,command", COMMANDS, ids=[f"README:{n}" for n, _ in COMMANDS])
def test_a_readme_command_works_as_typed(project, line, command):
    why = reason_not_run(command)
    if why:
        pytest.skip(why)
    result = subprocess.run(as_dry_run(command), cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=900)
    assert result.returncode == 0, f"README line {line}: {command}\n{result.stdout[-4000:]}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_command = [line for line in (ROOT / ".ci/run").read_text().splitlines() if "pytest" in line]
    assert len(ci_command) == 1 and ci_command[0] in readme


def test_the_readme_draws_the_workflows_rule_graph(project):
    from alpacare.rulegraph import BLOCK, current

    drawn = BLOCK.search((ROOT / "README.md").read_text())
    assert drawn, "the README has no ```mermaid block"
    assert drawn.group(0) == current(project), "the rule graph changed: python -m alpacare.rulegraph --write"


def test_the_rule_graph_is_read_from_snakemakes_mermaid_output():
    from alpacare.rulegraph import flowchart

    text = "flowchart TB\n\tid0[all]\n\tid1[report]\n\tid2[judge]\n\tstyle id0 fill:#D95757\n\tid2 --> id1\n\tid1 --> id0\n"
    assert flowchart(text) == "```mermaid\nflowchart LR\n    judge --> report\n    report --> all\n```\n"
    with pytest.raises(ValueError):
        flowchart("not a graph")


def test_licence_and_citation_name_the_project_and_the_papers_it_reproduces():
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence
    assert "Apache-2.0" in (ROOT / "pyproject.toml").read_text() and "Apache-2.0" in (ROOT / "README.md").read_text()
    import yaml

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] and citation["license"] == "Apache-2.0" and citation["title"]
    cited = [ref for ref in citation["references"]]
    identifiers = " ".join(str(ref) for ref in cited)
    assert "2310.14558" in identifiers and "2304.08247" in identifiers   # AlpaCare, medAlpaca
