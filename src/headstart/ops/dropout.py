"""Dropout for CPU training with cheaper random draws than torch's Bernoulli sampling.

torch's CPU dropout draws one value from its Mersenne Twister per element (``bernoulli_``): on
MiniLM (batch 32 x 30 tokens, 2 threads) the 14 dropout modules took 8% of a training step, 2.2 ms
a call for a [32, 30, 384] tensor against 0.02 ms for a multiply of the same size. Here one 64-bit
draw gives four 16-bit lanes, so the mask costs a quarter of the generator calls (0.8 ms a call,
mask and multiply included). The drop probability is ``p`` rounded to a multiple of 1/65536
(0.1 -> 0.1000061) and the kept values are scaled by the exact inverse of the keep probability,
so the output's expectation equals the input as with torch's dropout. The draws come from torch's
default CPU generator: ``seed_everything`` and saved RNG states govern them as before.

CUDA tensors keep ``torch.nn.functional.dropout`` (a fused Philox kernel there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

LANES = 65536  # values of one 16-bit lane


class _KeepScale(torch.autograd.Function):
    """x * keep * scale with the boolean mask saved for backward (as torch's dropout saves it)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None, None


def keep_mask(shape: torch.Size, cut: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, float]:
    """A boolean mask of ``shape`` dropping each element with probability cut / 65536 (lanes below
    cut - 32768 are dropped), and the scale 1 / (keep probability)."""
    numel = shape.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((numel + 3) // 4,), dtype=torch.int64, device=device)
    lanes = words.view(torch.int16)[:numel].view(shape)
    return lanes >= cut - LANES // 2, LANES / (LANES - cut)


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)`` with 16-bit draws on CPU (module docstring); torch's own
    dropout where the rounding would change ``p`` to 0 or 1, and on other devices."""
    if not training or p == 0.0:
        return x
    cut = round(p * LANES)  # p as a multiple of 1/65536
    if x.device.type != "cpu" or not 0 < cut < LANES or not x.is_floating_point():
        return F.dropout(x, p, training)
    keep, scale = keep_mask(x.shape, cut)
    return _KeepScale.apply(x, keep, scale)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` whose CPU forward draws its mask with :func:`fast_dropout`. A subclass, so
    code that checks ``isinstance(m, nn.Dropout)`` or reads ``m.p`` sees what it saw before."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:  # in-place dropout: torch's (the swap leaves these alone anyway)
            return super().forward(x)
        return fast_dropout(x, self.p, self.training)


def swap_dropout(model: nn.Module) -> list[tuple[nn.Module, str, nn.Dropout]]:
    """Replace every plain ``nn.Dropout`` (exact type, not in-place, p > 0) under ``model`` by a
    :class:`FastDropout` of the same ``p``; returns what :func:`restore_dropout` puts back."""
    swapped: list[tuple[nn.Module, str, nn.Dropout]] = []
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout and not child.inplace and child.p > 0:
                fast = FastDropout(child.p)
                fast.train(child.training)
                setattr(parent, name, fast)
                swapped.append((parent, name, child))
    return swapped


def restore_dropout(swapped: list[tuple[nn.Module, str, nn.Dropout]]) -> None:
    """Put the original modules back (their training flag follows the replacement's)."""
    for parent, name, original in swapped:
        current = getattr(parent, name)
        original.train(current.training)
        setattr(parent, name, original)


# ---- attention dropout (transformers models) ------------------------------------------------------
# transformers' "sdpa" attention hands dropout to torch's scaled_dot_product_attention, which on CPU
# then leaves its fused kernel for the math path and draws the attention-probability mask with
# bernoulli_ as well. FAST_SDPA computes that same math path (scores, mask, softmax, dropout, @ V)
# with the cheaper mask, and defers to "sdpa" for everything else (no dropout, other devices,
# position biases, grouped KV heads).
FAST_SDPA = "headstart_sdpa"


def attention_math(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: torch.Tensor | None,
                   scale: float, is_causal: bool, drop: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """softmax(Q K^T * scale + mask) -> drop -> @ V, with SDPA's mask conventions: a boolean mask
    is True where attention is allowed (a query that may attend nowhere gets zeros, as SDPA's math
    path gives), a float mask is added, ``is_causal`` (no mask) is SDPA's upper-left causal mask."""
    scores = torch.matmul(query, key.transpose(-1, -2)).mul_(scale)
    allowed = None
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        allowed = attention_mask
    elif attention_mask is not None:
        scores = scores + attention_mask
    elif is_causal:
        allowed = torch.ones(query.shape[-2], key.shape[-2], dtype=torch.bool, device=query.device).tril()
    if allowed is not None:
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1)
    if allowed is not None:
        probs = probs.masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)
    return torch.matmul(drop(probs), value)


def fast_dropout_sdpa(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """A transformers attention function (the signature of ``sdpa_attention_forward``)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    simple = (dropout > 0.0 and query.device.type == "cpu" and kwargs.get("position_bias") is None
              and getattr(module, "num_key_value_groups", 1) == 1 and query.shape[1] == key.shape[1])
    if not simple:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    q_length = query.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(q_length > 1 and attention_mask is None and causal)
    if causal and key.shape[2] > q_length:  # as sdpa_attention_forward: prefill against a longer cache
        key, value = key[:, :, :q_length], value[:, :, :q_length]
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = attention_math(query, key, value, attention_mask, scale, causal, lambda p: fast_dropout(p, dropout))
    return out.transpose(1, 2).contiguous(), None


def register_fast_sdpa() -> None:
    """Make FAST_SDPA known to transformers, with sdpa's mask builder (without one, transformers
    hands a custom attention no mask at all: padding would be attended)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(FAST_SDPA, fast_dropout_sdpa)
    AttentionMaskInterface.register(FAST_SDPA, sdpa_mask)


def use_fast_sdpa(model: nn.Module) -> list[tuple[Any, str]]:
    """Point every transformers config under ``model`` that runs "sdpa" at FAST_SDPA; returns what
    :func:`restore_attention` puts back."""
    register_fast_sdpa()
    changed: list[tuple[Any, str]] = []
    seen: set[int] = set()
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is None or id(config) in seen or getattr(config, "_attn_implementation", None) != "sdpa":
            continue
        seen.add(id(config))
        _set_attention(config, FAST_SDPA)
        changed.append((config, "sdpa"))
    return changed


def restore_attention(changed: list[tuple[Any, str]]) -> None:
    for config, implementation in changed:
        _set_attention(config, implementation)


def _set_attention(config: Any, implementation: str) -> None:
    # the public setter also rewrites every sub-config's choice; each config is visited on its own
    if hasattr(config, "_attn_implementation_internal"):
        config._attn_implementation_internal = implementation
    else:
        config._attn_implementation = implementation
