"""An FSDP auto-wrap policy that makes each transformer block its own shard unit."""

from __future__ import annotations

import re

from torch import nn
from torch.distributed.fsdp.wrap import CustomPolicy

BLOCK_NAME = re.compile(r"(Layer|Block|Stage)$")


def is_transformer_block(module: nn.Module) -> bool:
    """ViTLayer, BertLayer, GPT2Block, T5Block, BartEncoderLayer, ConvNextStage... (not LayerNorm)."""
    return bool(BLOCK_NAME.search(type(module).__name__)) and any(True for _ in module.parameters())


class TransformerBlockPolicy(CustomPolicy):
    def __init__(self) -> None:
        super().__init__(is_transformer_block)
