"""What every Snakemake script does first: log to the rule's log file, make the script safe
for spawned children, hold its outputs' lock (alpacare.joblock: one running job per output),
give a GPU job its devices and check it sees them, pin torch threads, and remember the rule's
name for the ledger and error messages, and its outputs, beside which the job records the cache
keys of every reply they depend on (the replay bundle's list)."""

from __future__ import annotations

import importlib.machinery
import logging
import sys
from pathlib import Path

from . import joblock

_rule = ""
_config: dict = {}
_outputs: list[str] = []
_replies: set[str] = set()
REPLIES = Path("results/replies")  # <output path under results/>.keys: one cache key a line


def current_rule() -> str:
    """The Snakemake rule this process runs ('' outside a job)."""
    return _rule


def current_config() -> dict:
    """The run's config ({} outside a job): where the LLM layer finds an endpoint's
    operational settings (price, limits, timeouts, key variable), which rule params leave
    out because they change no artifact."""
    return _config


def replies_file(output: str | Path) -> Path:
    """Where the job that writes `output` lists the cache keys of the replies it used."""
    output = Path(output)
    relative = output.relative_to("results") if output.parts[:1] == ("results",) else output
    return REPLIES / f"{relative.as_posix()}.keys"


def record_replies(keys) -> None:
    """Add these cache keys to the job's list (every reply its outputs depend on, whichever
    LLM answered), rewritten whole so a rerun's list replaces the last one. Outside a job: nothing."""
    if not _outputs:
        return
    from .io import write_text

    _replies.update(keys)
    write_text(replies_file(_outputs[0]), "".join(key + "\n" for key in sorted(_replies)))


def setup(snakemake) -> None:
    global _rule, _config, _outputs
    _rule = str(getattr(snakemake, "rule", "") or "")
    _config = dict(getattr(snakemake, "config", None) or {})
    _outputs = [str(o) for o in (getattr(snakemake, "output", None) or [])]
    _replies.clear()
    handlers = [logging.StreamHandler(sys.stderr)]
    if snakemake.log:
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=handlers, force=True)
    # the error that ends a job belongs in its log file, not only on the terminal
    sys.excepthook = lambda kind, value, tb: logging.getLogger("alpacare").error(
        "%s: %s", kind.__name__, value, exc_info=(kind, value, tb))
    spawn_safe_main()
    # a job of the same outputs left running by a killed controller: wait for it, never pay twice
    joblock.hold(list(getattr(snakemake, "output", None) or []), _rule)
    gpus = int(getattr(snakemake, "resources", {}).get("gpu", 0) or 0)
    if gpus:
        from . import gpus as devices
        from . import hardware

        who = f"rule {_rule or '?'}"
        devices.claim(gpus, who)  # before anything initialises CUDA; a no-op under SLURM
        if not (_config.get("cluster") or {}).get("fake_gpus"):  # a test cluster's GPUs have no CUDA behind them
            # a GPU job never runs on the CPU instead, for inference as for training
            hardware.require_gpus(gpus, f"{who}'s resources.gpu", advice="a job that runs a model of 1B parameters "
                                  "or more asks for GPUs (alpacare.cluster); run it where it gets them")
    try:
        import torch

        torch.set_num_threads(max(1, snakemake.threads))
    except ImportError:
        pass


def spawn_safe_main() -> None:
    """A process started with `spawn` (vLLM's workers once CUDA is up, torch's DataLoader
    workers, ...) re-runs its parent's main script before its own work: for Snakemake's
    generated script, with no `if __name__ == "__main__"` guard, the whole job again, which
    stops in the child while it bootstraps. Naming the main module `__main__` in its spec makes
    multiprocessing's children skip that step; what they run (library functions) is imported by
    its own module's name, so they lose nothing."""
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__spec__", None) is None:
        main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
