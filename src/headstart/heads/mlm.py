"""BERT's pretraining heads: masked-LM (transform + decoder tied to the input embeddings) and NSP.

Layouts follow transformers' ``BertPreTrainingHeads`` so weights map one to one
(``cls.predictions.transform.*``, ``cls.predictions.bias``, ``cls.seq_relationship.*``);
``MaskedLMTask.export_pretrained`` writes them under those names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN


def _bert_init(module: nn.Module, std: float) -> None:
    """BERT's init: normal(0, std) weights, zero biases, LayerNorm (1, 0)."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.normal_(sub.weight, std=std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)


class MLMHead(nn.Module):
    """hidden [..., D] -> vocabulary logits [..., V].

    transform: dense D->D, activation, LayerNorm; decoder: the input embedding table [V, D] given
    to ``forward`` (tied: no second copy, it follows the embeddings through resizes and loads),
    plus an output-only bias [V].
    """

    def __init__(
        self,
        in_features: int,
        vocab_size: int,
        activation: str = "gelu",
        layer_norm_eps: float = 1e-12,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, in_features)
        self.activation = ACT2FN[activation]
        self.layer_norm = nn.LayerNorm(in_features, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        _bert_init(self, init_std)

    def transform(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., D] -> transformed [..., D] (before the decoder)."""
        return self.layer_norm(self.activation(self.dense(hidden)))

    def forward(self, hidden: torch.Tensor, embedding_weight: torch.Tensor) -> torch.Tensor:
        """hidden [..., D], embedding_weight [V, D] -> logits [..., V]."""
        return F.linear(self.transform(hidden), embedding_weight, self.bias)


class NSPHead(nn.Module):
    """pooled [B, D] -> is-next logits [B, 2] (class 0: B follows A, as in BERT).

    ``pooler=True`` adds BERT's pooler (dense + tanh on the [CLS] state) for backbones without one;
    with ``pooler=False`` the input is already pooled (BERT's own pooler output).
    """

    def __init__(self, in_features: int, pooler: bool = False, init_std: float = 0.02) -> None:
        super().__init__()
        self.pooler = nn.Sequential(nn.Linear(in_features, in_features), nn.Tanh()) if pooler else nn.Identity()
        self.seq_relationship = nn.Linear(in_features, 2)
        _bert_init(self, init_std)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.seq_relationship(self.pooler(pooled))
