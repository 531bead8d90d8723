"""Stage: fine-tuning one model."""

from __future__ import annotations

import logging

from .. import mixture
from ..io import read_json

log = logging.getLogger("alpacare")


def finetune(data_paths, caps, backbone_dir, out_dir, hp) -> None:
    from ..train import finetune as train

    records = mixture.mix([(read_json(p), cap) for p, cap in zip(data_paths, caps)], seed=hp["seed"])
    summary = train(records, backbone_dir, out_dir, hp, log=log.info)
    log.info("trained on %d examples in %.1fs: loss %.3f -> %.3f", summary["examples"], summary["seconds"],
             summary["first_loss"], summary["last_loss"])
