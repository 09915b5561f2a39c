"""wav2vec 2.0's product quantizer: G codebooks of V entries picked with a Gumbel softmax.

Each frame's features [C] are projected to G x V logits; each group picks one entry (hard
straight-through Gumbel-softmax in training, argmax in evaluation), and the G picked entries
[codevector_dim / G] are concatenated. Same parameters and names as transformers'
``Wav2Vec2GumbelVectorQuantizer`` (``weight_proj``, ``codevectors``) so weights copy across.
The temperature is annealed per optimizer step: ``max(max * decay**step, min)`` (paper: 2, 0.5,
0.999995).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Quantized:
    """codevectors [B, F, codevector_dim]; codes [B, F, G] picked entry per group;
    prob_perplexity: of the soft (softmax) code distribution averaged over masked steps;
    code_perplexity: of the hard picks over masked steps (both summed over groups, at most G*V)."""

    codevectors: torch.Tensor
    codes: torch.Tensor
    prob_perplexity: torch.Tensor
    code_perplexity: torch.Tensor


class GumbelVectorQuantizer(nn.Module):
    """features [B, F, in_features] -> Quantized (see the module docstring).

    num_groups (G), num_vars (V): codebooks and entries per codebook; codevector_dim: size of the
    concatenated code vector (divisible by G); temperature: (max, min, decay per step).
    """

    def __init__(
        self,
        in_features: int,
        num_groups: int = 2,
        num_vars: int = 320,
        codevector_dim: int = 256,
        temperature: tuple[float, float, float] = (2.0, 0.5, 0.999995),
    ) -> None:
        super().__init__()
        if codevector_dim % num_groups:
            raise ValueError(f"codevector_dim {codevector_dim} must be divisible by num_groups {num_groups}")
        self.num_groups, self.num_vars = num_groups, num_vars
        self.codevectors = nn.Parameter(torch.rand(1, num_groups * num_vars, codevector_dim // num_groups))
        self.weight_proj = nn.Linear(in_features, num_groups * num_vars)
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)  # as fairseq / HF: logits start spread out
        nn.init.zeros_(self.weight_proj.bias)
        self.max_temperature, self.min_temperature, self.temperature_decay = (float(t) for t in temperature)
        self.temperature = self.max_temperature

    @property
    def num_codevectors(self) -> int:
        return self.num_groups * self.num_vars

    def set_step(self, step: int) -> None:
        """Anneal the Gumbel temperature to optimizer step ``step``."""
        self.temperature = max(self.max_temperature * self.temperature_decay**step, self.min_temperature)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> Quantized:
        """features [B, F, C]; mask [B, F] bool: the steps the perplexities average over (all if None)."""
        batch, frames, _ = features.shape
        logits = self.weight_proj(features).view(batch * frames, self.num_groups, self.num_vars)
        codes = logits.argmax(-1)  # [B*F, G]
        hard = torch.zeros_like(logits).scatter_(-1, codes[..., None], 1.0)
        soft = logits.float().softmax(-1)
        if self.training:
            flat = logits.reshape(batch * frames * self.num_groups, self.num_vars).float()
            probs = nn.functional.gumbel_softmax(flat, tau=self.temperature, hard=True).type_as(logits)
            probs = probs.view(batch * frames, self.num_groups, self.num_vars)
            codes = probs.argmax(-1)
        else:
            probs = hard
        flat_mask = None if mask is None else mask.reshape(-1)
        # [B*F, G*V, 1] * [1, G*V, d] -> sum over entries of each group -> [B, F, G*d]
        vectors = (probs.reshape(batch * frames, -1, 1) * self.codevectors).view(batch * frames, self.num_groups, self.num_vars, -1)
        return Quantized(
            codevectors=vectors.sum(-2).reshape(batch, frames, -1),
            codes=codes.view(batch, frames, self.num_groups),
            prob_perplexity=perplexity(soft, flat_mask),
            code_perplexity=perplexity(hard.float(), flat_mask),
        )


def perplexity(probs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """probs [N, G, V] per-step distributions; mask [N] bool -> sum over groups of
    exp(entropy of the mean distribution over the kept steps) (HF's ``_compute_perplexity``)."""
    if mask is not None:
        probs = torch.where(mask[:, None, None], probs, torch.zeros_like(probs))
        marginal = probs.sum(0) / mask.sum().clamp(min=1)
    else:
        marginal = probs.mean(0)
    return torch.exp(-torch.xlogy(marginal, marginal).sum(-1)).sum()
