"""What every Snakemake script does first: log to the rule's log file, pin torch threads."""

from __future__ import annotations

import logging
import sys


def setup(snakemake) -> None:
    handlers = [logging.StreamHandler(sys.stderr)]
    if snakemake.log:
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=handlers, force=True)
    # the error that ends a job belongs in its log file, not only on the terminal
    sys.excepthook = lambda kind, value, tb: logging.getLogger("alpacare").error(
        "%s: %s", kind.__name__, value, exc_info=(kind, value, tb))
    try:
        import torch

        torch.set_num_threads(max(1, snakemake.threads))
    except ImportError:
        pass
