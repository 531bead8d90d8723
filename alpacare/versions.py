"""Installed versions against what pyproject.toml declares, checked before a job does any work.

A library below its floor fails far from the cause: transformers below 5.23 with a TypeError
on `activation_checkpointing` deep inside training, peft below 0.18 on import of a renamed
transformers name. Every entry point that trains or runs a model (the finetune stage, local
and vLLM inference, bench/gpu_check.py) calls check_floors with the packages it uses, and
stops with one message naming each package, the version found and the range declared.

The range is read from pyproject.toml beside the package (a checkout, installed or not: a GPU
node may run from the repository root), else from the installed alpacare's metadata; the
project's dependencies and every optional group count (bitsandbytes, deepspeed, ...). A
package declared nowhere is only required to be installed."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


class VersionError(RuntimeError):
    """An installed package is missing or outside the range pyproject.toml declares."""


def declared(pyproject: Path = PYPROJECT) -> dict[str, Requirement]:
    """Each declared package (canonical name) and its requirement."""
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        lines = list(project.get("dependencies", []))
        for group in project.get("optional-dependencies", {}).values():
            lines += group
    else:
        lines = metadata.requires("alpacare") or []
    requirements = {}
    for line in lines:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if requirement.specifier or name not in requirements:  # the group with a range wins
            requirements[name] = requirement
    return requirements


def check_floors(packages: Iterable[str], pyproject: Path = PYPROJECT) -> dict[str, str]:
    """The installed version of each package ({name: version}); a VersionError naming every
    package that is missing or outside its declared range, with the version found."""
    requirements = declared(pyproject)
    found, problems, fixes = {}, [], []
    for package in packages:
        requirement = requirements.get(canonicalize_name(package))
        wanted = f"{package}{requirement.specifier}" if requirement and requirement.specifier else package
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            problems.append(f"{package} is not installed (alpacare needs {wanted})")
            fixes.append(wanted)
            continue
        found[package] = version
        if requirement is None or not requirement.specifier:
            continue
        try:
            ok = requirement.specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            problems.append(f"{package} {version} is installed, alpacare needs {requirement.specifier}")
            fixes.append(wanted)
    if problems:
        source = pyproject if pyproject.is_file() else "alpacare's package metadata"
        raise VersionError(f"installed versions outside the ranges in {source}: {'; '.join(problems)}. "
                           f"Install matching ones: pip install " + " ".join(f"'{fix}'" for fix in fixes))
    return found
