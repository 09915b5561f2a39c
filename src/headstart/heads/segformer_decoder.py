"""SegFormer's all-MLP decoder: project every scale to one width, upsample to 1/4, concat, fuse, classify."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class _Projection(nn.Module):
    """Per-pixel linear projection of one scale. Named like transformers' SegformerMLP so weights load as is."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, out_channels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, C_in, H, W] -> [B, C_out, H, W]."""
        batch, _, height, width = features.shape
        out = self.proj(features.flatten(2).transpose(1, 2))  # [B, H*W, C_out]
        return out.transpose(1, 2).reshape(batch, -1, height, width)


class SegformerMLPDecoder(nn.Module):
    """Multi-scale feature maps -> per-pixel class logits at the finest scale (1/4 of the image).

    Parameter names match transformers' SegformerDecodeHead, so
    ``decoder.load_state_dict(segformer.decode_head.state_dict())`` loads a pretrained head.
    """

    def __init__(
        self, feature_channels: list[int], decoder_hidden_size: int, num_classes: int, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.linear_projections = nn.ModuleList(_Projection(c, decoder_hidden_size) for c in feature_channels)
        # 1x1 conv + BN + ReLU: the ConvModule of the original implementation.
        self.linear_fuse = nn.Conv2d(
            decoder_hidden_size * len(feature_channels), decoder_hidden_size, kernel_size=1, bias=False
        )
        self.batch_norm = nn.BatchNorm2d(decoder_hidden_size)
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(decoder_hidden_size, num_classes, kernel_size=1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """features: per scale [B, C_i, H_i, W_i], finest first -> logits [B, num_classes, H_0, W_0]."""
        if len(features) != len(self.linear_projections):
            raise ValueError(f"expected {len(self.linear_projections)} feature maps, got {len(features)}")
        size = features[0].shape[-2:]
        projected = [
            F.interpolate(proj(x), size=size, mode="bilinear", align_corners=False)
            for x, proj in zip(features, self.linear_projections)
        ]
        # Coarsest first, as the reference concatenates (keeps pretrained fuse weights valid).
        fused = self.activation(self.batch_norm(self.linear_fuse(torch.cat(projected[::-1], dim=1))))
        return self.classifier(self.dropout(fused))
