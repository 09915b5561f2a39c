"""GLPN depth decoder: coarse-to-fine Selective Feature Fusion, then a sigmoid depth head.

Follows Kim et al. 2022, "Global-Local Path Networks for Monocular Depth Estimation"
(and transformers' ``GLPNDecoder`` + ``GLPNDepthEstimationHead``): start from the 1/32
map, project every encoder map to ``hidden_size`` channels, upsample the running map to
the next finer scale and fuse it with that scale's (projected) skip feature through
Selective Feature Fusion, down to 1/4; then two x2 upsamplings to full resolution, two
3x3 convolutions and ``sigmoid * max_depth``.

Unlike transformers' fixed ``scale_factor=2`` upsampling, every upsampling here goes to
the size of the next map, so odd input sizes (where the encoder rounds up) work and the
prediction has exactly the input's size. Where sizes are exact doubles the two agree
bit for bit, which is what lets a GLPN checkpoint's decoder and head load here
(:func:`glpn_decoder_state_dict`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class SelectiveFeatureFusion(nn.Module):
    """Blend a local (skip) and a global (decoder) map with a learned two-channel attention.

    local, global_: [B, C, H, W] -> [B, C, H, W] = local * a0 + global_ * a1,
    where a = sigmoid(conv(conv(conv([local, global_])))) is [B, 2, H, W].
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.reduce = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.refine = nn.Sequential(nn.Conv2d(channels, half, 3, padding=1), nn.BatchNorm2d(half), nn.ReLU())
        self.attention = nn.Conv2d(half, 2, 3, padding=1)

    def forward(self, local: torch.Tensor, global_: torch.Tensor) -> torch.Tensor:
        attn = torch.sigmoid(self.attention(self.refine(self.reduce(torch.cat((local, global_), dim=1)))))
        return local * attn[:, 0:1] + global_ * attn[:, 1:2]


class DepthDecoder(nn.Module):
    """GLPN decoder + depth head over multi-scale encoder maps.

    Args:
        feature_channels: channels of the encoder maps, finest first (GLPN: [32, 64, 160, 256]
            at strides [4, 8, 16, 32]); the backbone's ``feature_channels``.
        hidden_size: decoder width (GLPN's ``decoder_hidden_size``).
        max_depth: the head predicts ``sigmoid(x) * max_depth`` metres.

    forward(feature_maps, output_size):
        feature_maps: list of [B, C_i, H_i, W_i], finest first, each about half the size of
            the one before (rounded up).
        output_size: (H, W) of the input image; default 4x the finest map.
        returns predicted depth [B, H, W] in (0, max_depth).
    """

    def __init__(self, feature_channels: Sequence[int], hidden_size: int = 64, max_depth: float = 10.0) -> None:
        super().__init__()
        if len(feature_channels) < 2:
            raise ValueError(f"DepthDecoder needs at least two feature maps, got channels {list(feature_channels)}")
        self.max_depth = float(max_depth)
        coarse_first = list(feature_channels)[::-1]
        # 1x1 projections to the decoder width; an identity where widths already match
        # (as in transformers, so the checkpoint has no weights for it).
        self.projections = nn.ModuleList(
            [nn.Identity() if c == hidden_size else nn.Conv2d(c, hidden_size, 1) for c in coarse_first]
        )
        self.fusions = nn.ModuleList([SelectiveFeatureFusion(hidden_size) for _ in coarse_first[1:]])
        self.head = nn.Sequential(
            nn.Conv2d(hidden_size, hidden_size, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden_size, 1, 3, padding=1),
        )

    def decode(self, feature_maps: Sequence[torch.Tensor], output_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Fused full-resolution features [B, hidden_size, H, W] (before the head)."""
        if len(feature_maps) != len(self.projections):
            raise ValueError(f"expected {len(self.projections)} feature maps, got {len(feature_maps)}")
        coarse_first = list(feature_maps)[::-1]
        x = self.projections[0](coarse_first[0])
        for skip, project, fuse in zip(coarse_first[1:], self.projections[1:], self.fusions):
            x = fuse(project(skip), _upsample(x, skip.shape[-2:]))
        finest_h, finest_w = x.shape[-2:]
        out_h, out_w = output_size if output_size is not None else (4 * finest_h, 4 * finest_w)
        # Two x2 steps as in GLPN (1/4 -> 1/2 -> 1), not one x4: it is what the weights saw.
        x = _upsample(x, (-(-out_h // 2), -(-out_w // 2)))
        return _upsample(x, (out_h, out_w))

    def forward(
        self, feature_maps: Sequence[torch.Tensor], output_size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        x = self.head(self.decode(feature_maps, output_size))
        return (torch.sigmoid(x) * self.max_depth).squeeze(1)


def _upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize [B, C, h, w] -> [B, C, *size]; equals nn.Upsample(scale_factor=2) on exact doubles."""
    return F.interpolate(x, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)
