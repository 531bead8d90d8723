"""What every Snakemake script does first: log to the rule's log file, hold its outputs' lock
(alpacare.joblock: one running job per output), pin torch threads, and remember the rule's
name for the ledger and error messages."""

from __future__ import annotations

import logging
import sys

from . import joblock

_rule = ""
_config: dict = {}


def current_rule() -> str:
    """The Snakemake rule this process runs ('' outside a job)."""
    return _rule


def current_config() -> dict:
    """The run's config ({} outside a job): where the LLM layer finds an endpoint's
    operational settings (price, limits, timeouts, key variable), which rule params leave
    out because they change no artifact."""
    return _config


def setup(snakemake) -> None:
    global _rule, _config
    _rule = str(getattr(snakemake, "rule", "") or "")
    _config = dict(getattr(snakemake, "config", None) or {})
    handlers = [logging.StreamHandler(sys.stderr)]
    if snakemake.log:
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=handlers, force=True)
    # the error that ends a job belongs in its log file, not only on the terminal
    sys.excepthook = lambda kind, value, tb: logging.getLogger("alpacare").error(
        "%s: %s", kind.__name__, value, exc_info=(kind, value, tb))
    # a job of the same outputs left running by a killed controller: wait for it, never pay twice
    joblock.hold(list(getattr(snakemake, "output", None) or []), _rule)
    try:
        import torch

        torch.set_num_threads(max(1, snakemake.threads))
    except ImportError:
        pass
