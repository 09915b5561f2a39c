"""Small pieces the three encoder text tasks share (classification, NER, extractive QA)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule

from headstart.backbones.base import EncoderOutput


def encode(backbone: Any, batch: dict[str, Any]) -> EncoderOutput:
    """Run the text encoder on a padded batch (input_ids, attention_mask [, token_type_ids]: [B, L])."""
    return backbone(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))


def log_padding(task: LightningModule, batch: dict[str, Any], stage: str) -> None:
    """``<stage>/padding_fraction``: padded / all positions over the epoch (token-weighted mean)."""
    total = batch.get("num_tokens", 0) + batch.get("num_padded", 0)
    if total:
        task.log(f"{stage}/padding_fraction", batch["num_padded"] / total, on_step=False, on_epoch=True,
                 batch_size=total, sync_dist=True)


def wandb_table(columns: list[str], rows: list[list[Any]]) -> Any:
    """A W&B table of validation examples (logged by the ValidationMedia callback)."""
    import wandb

    return wandb.Table(columns=columns, data=rows)
