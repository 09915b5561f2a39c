"""wav2vec2-style span masking of time steps (the backbone masks features, the pretraining task
samples negatives from the same spans)."""

from __future__ import annotations

import torch


def span_mask(lengths: torch.Tensor, size: int, prob: float, span: int) -> torch.Tensor:
    """Random spans covering about ``prob`` of each row's first ``lengths[b]`` positions.

    lengths: [B] long; returns [B, size] bool. Each row gets ``floor(prob * L / span + u)``
    spans (u ~ U[0, 1), as wav2vec2 does) with uniform starts; spans may overlap. Runs on
    the tensors' device without host syncs (the span count is bounded statically by size).
    """
    device = lengths.device
    max_spans = int(prob * size / span) + 1
    num = torch.floor(prob * lengths / span + torch.rand(lengths.shape, device=device)).long()  # [B]
    starts = torch.rand(len(lengths), max_spans, device=device)
    starts = (starts * (lengths - span + 1).clamp(min=1)[:, None]).long()  # [B, S]
    used = torch.arange(max_spans, device=device)[None, :] < num[:, None]  # [B, S]
    pos = (starts[..., None] + torch.arange(span, device=device)).clamp(max=size - 1)  # [B, S, span]
    hits = torch.zeros(len(lengths), size, device=device)
    hits.scatter_add_(1, pos.flatten(1), used[..., None].expand_as(pos).flatten(1).float())
    in_range = torch.arange(size, device=device)[None, :] < lengths[:, None]
    return (hits > 0) & in_range
