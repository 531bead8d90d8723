#!/usr/bin/env bash
# Snakemake runs this in the new environment, from the working directory (the repository root):
# the scripts import the alpacare package from this checkout, without reinstalling its dependencies.
set -euo pipefail
pip install --no-deps --editable .
