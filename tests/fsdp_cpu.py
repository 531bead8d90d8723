"""One training process of an FSDP2 run on the CPU (gloo), as tests/test_fsdp.py launches two
with torch.distributed.run: `python tests/fsdp_cpu.py <run.json> <report dir>`.

accelerate shards with FSDP only on accelerators (a CPU process group is plain DDP to it), and
alpacare.train only asks for FSDP where the run has GPUs. Two switches let the very same
code path run here: accelerate's state honours the FSDP plugin on MULTI_CPU, and the run
counts as FSDP. torch's own fully_shard works over gloo on the CPU unchanged. Everything else,
model loading on ranks other than 0 included, is the production code.

Each rank writes <report dir>/rank<N>.json: what its optimizer holds once the Trainer has
prepared it (count, distinct tensors, whether they are exactly the model's sharded trainable
parameters, their local shard sizes)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType
from transformers import TrainerCallback

import alpacare.train as train

_init = AcceleratorState.__init__
_plugin = []  # the Trainer's FSDP plugin; later AcceleratorState() calls (the final save) keep it


def _init_with_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    _plugin[:] = [fsdp_plugin] if fsdp_plugin is not None else _plugin
    if _plugin and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = _plugin[0]


AcceleratorState.__init__ = _init_with_fsdp_on_cpu
train.fsdp_active = lambda run: run["runtime"]["devices"] > 1


class OptimizerReport(TrainerCallback):
    def __init__(self, out: Path):
        self.out = out

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        params = [p for group in optimizer.param_groups for p in group["params"]]
        trainable = [p for p in model.parameters() if p.requires_grad]
        local = [getattr(p, "_local_tensor", p) for p in params]
        report = {
            "optimizer_params": len(params),
            "distinct": len({id(p) for p in params}),
            "trainable": len(trainable),
            "are_the_model_shards": {id(p) for p in params} == {id(p) for p in trainable},
            "sharded": all(type(p).__name__ == "DTensor" for p in params),
            "local_numel": sum(t.numel() for t in local),
            "full_numel": sum(p.numel() for p in params),
        }
        self.out.joinpath(f"rank{args.process_index}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.manual_seed(0)
    run = json.loads(Path(sys.argv[1]).read_text())
    train.run(run, extra_callbacks=[OptimizerReport(Path(sys.argv[2]))])
