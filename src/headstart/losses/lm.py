"""Language-model cross-entropy computed from hidden states, one chunk of tokens at a time.

An LM head's logits are [tokens x vocab]: for GPT-2 at 8 x 1024 tokens that is 1.6 GB in
fp32, more than the whole model. So the loss takes the final hidden states and the head's
weight instead of logits, and walks over chunks of tokens: each chunk's logits are made,
reduced to a loss and to their gradient, and freed before the next chunk (a custom autograd
function computes the gradients in the forward pass, Liger-kernel style, so nothing is
recomputed in backward and only one chunk's logits ever exist).

What the caller passes (the model-specific part stays with the caller):

- GPT-2: ``hidden`` = ``transformer(...).last_hidden_state``, ``weight`` = ``lm_head.weight``
  (tied to ``wte``), no bias; ``shift=True``.
- BART: ``hidden`` = decoder ``last_hidden_state``, ``weight`` = ``lm_head.weight``,
  ``bias`` = ``final_logits_bias[0]`` (a buffer, [V]); ``shift=False``.
- T5: ``hidden`` = decoder ``last_hidden_state`` **times** ``d_model ** -0.5`` when
  ``config.scale_decoder_outputs`` (transformers sets it when embeddings are tied, the
  default); ``weight`` = ``lm_head.weight``, no bias; ``shift=False``.
- BERT MLM: ``hidden`` = the MLM head's transform output, ``weight``/``bias`` = its decoder.

Labels equal to ``ignore_index`` (-100) are ignored. The mean is over non-ignored tokens,
as in transformers (a batch with no target tokens gives 0, not NaN).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _chunk_loss_and_grad(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, label_smoothing: float, need_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """logits: [n, V] fp32 or fp64, target: [n] (ignored rows hold any valid id), valid: [n] bool.

    Returns the summed loss of the valid rows and d(sum)/d(logits) [n, V] in the same dtype (or None).
    """
    vocab = logits.shape[-1]
    log_z = torch.logsumexp(logits, dim=-1)  # [n]
    per_token = log_z - logits.gather(1, target[:, None]).squeeze(1)
    if label_smoothing > 0:
        # torch's smoothing: (1-e) * nll + e * mean_j(-log p_j), and -log p_j = log_z - logit_j
        per_token = (1 - label_smoothing) * per_token + label_smoothing * (log_z - logits.mean(dim=-1))
    loss_sum = torch.where(valid, per_token, 0.0).sum()
    if not need_grad:
        return loss_sum, None
    # d/dlogits = softmax - smoothed one-hot; done in place on the logits to hold one [n, V] buffer
    grad = logits.sub_(log_z[:, None]).exp_()
    grad.scatter_add_(1, target[:, None], torch.full_like(grad[:, :1], label_smoothing - 1))
    if label_smoothing > 0:
        grad.sub_(label_smoothing / vocab)
    grad.mul_(valid[:, None])
    return loss_sum, grad


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """sum over valid tokens of CE(hidden @ weight.T + bias, labels), gradients made in forward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        labels: torch.Tensor,
        chunk_size: int,
        label_smoothing: float,
        ignore_index: int,
        compute_dtype: torch.dtype,
        needs: tuple[bool, bool, bool],
    ) -> torch.Tensor:
        """hidden: [N, D], weight: [V, D], bias: [V] or None, labels: [N]. Returns a scalar (>= fp32)."""
        need_h, need_w, need_b = needs
        need_grad = any(needs)
        w = weight.to(compute_dtype)
        b = None if bias is None else bias.to(compute_dtype)
        grad_h = torch.empty_like(hidden) if need_h else None
        acc = torch.promote_types(compute_dtype, torch.float32)  # softmax and sums: fp32 or wider
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=acc, device=weight.device) if need_b else None
        total = torch.zeros((), dtype=acc, device=hidden.device)
        # autocast would re-cast our explicit dtypes; the caller already chose compute_dtype from it
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, hidden.shape[0], chunk_size):
                h = hidden[start : start + chunk_size].to(compute_dtype)
                y = labels[start : start + chunk_size]
                valid = y != ignore_index
                logits = F.linear(h, w, b).to(acc)  # [n, V]: the only vocab-sized buffer
                loss, grad = _chunk_loss_and_grad(logits, torch.where(valid, y, 0), valid, label_smoothing, need_grad)
                total += loss
                if grad is None:
                    continue
                if grad_b is not None:
                    grad_b += grad.sum(dim=0)
                grad = grad.to(compute_dtype)
                if grad_h is not None:
                    grad_h[start : start + chunk_size] = (grad @ w).to(hidden.dtype)
                if grad_w is not None:
                    grad_w += (grad.t() @ h).to(acc)
        ctx.save_for_backward(
            *(g if g is not None else torch.empty(0) for g in (grad_h, grad_w, grad_b))
        )
        ctx.needs = needs
        ctx.param_dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor) -> tuple:  # type: ignore[override]
        grad_h, grad_w, grad_b = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs
        w_dtype, b_dtype = ctx.param_dtypes
        return (
            grad_h * grad_out.to(grad_h.dtype) if need_h else None,
            (grad_w * grad_out).to(w_dtype) if need_w else None,
            (grad_b * grad_out).to(b_dtype) if need_b else None,
            None, None, None, None, None, None,
        )


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The matmul dtype transformers would use: autocast's if on, else the wider of the two."""
    if torch.is_autocast_enabled(hidden.device.type):
        return torch.get_autocast_dtype(hidden.device.type)
    return torch.promote_types(hidden.dtype, weight.dtype)


def linear_cross_entropy_sum(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    chunk_size: int = 1024,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed CE of ``hidden @ weight.T + bias`` against ``labels``, chunk_size tokens at a time.

    hidden: [..., D] (e.g. [B, T, D]); weight: [V, D]; bias: [V] or None; labels: [...] (e.g. [B, T])
    with ``ignore_index`` where no loss is wanted. Returns (loss_sum: fp32 scalar (fp64 for
    fp64 inputs), num_tokens: int64 scalar), both on hidden's device; no host sync.
    Differentiable w.r.t. hidden, weight and bias.
    """
    if hidden.shape[:-1] != labels.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} and labels {tuple(labels.shape)} disagree")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    flat_h = hidden.reshape(-1, hidden.shape[-1])
    flat_y = labels.reshape(-1).to(hidden.device)
    grad_on = torch.is_grad_enabled()
    needs = (
        grad_on and hidden.requires_grad,
        grad_on and weight.requires_grad,
        grad_on and bias is not None and bias.requires_grad,
    )
    loss_sum = _ChunkedLinearCrossEntropy.apply(
        flat_h, weight, bias, flat_y, chunk_size, label_smoothing, ignore_index,
        _compute_dtype(hidden, weight), needs,
    )
    return loss_sum, (flat_y != ignore_index).sum()


def shift_labels_left(labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Causal-LM targets: position t predicts token t+1. labels: [B, T] -> [B, T], last = ignore.

    Shifting the labels (not the hidden states) avoids copying [B, T-1, D], as transformers does.
    """
    return F.pad(labels[..., 1:], (0, 1), value=ignore_index)


def lm_loss_sum(
    hidden_states: torch.Tensor,
    lm_head_weight: torch.Tensor,
    labels: torch.Tensor,
    lm_head_bias: torch.Tensor | None = None,
    *,
    shift: bool,
    chunk_size: int = 1024,
    ignore_index: int = -100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unsmoothed summed NLL and token count of one batch, to accumulate over a split.

    hidden_states: [B, T, D]; labels: [B, T] (input ids for causal LM with ``shift=True``,
    decoder labels for seq2seq with ``shift=False``). Perplexity = ``perplexity(sum, count)``
    of the totals over the split, not the mean of per-batch perplexities.
    """
    targets = shift_labels_left(labels, ignore_index) if shift else labels
    return linear_cross_entropy_sum(
        hidden_states, lm_head_weight, targets, lm_head_bias, chunk_size=chunk_size, ignore_index=ignore_index
    )


def perplexity(total_loss: torch.Tensor | float, total_tokens: torch.Tensor | int) -> float:
    """exp(total_loss / total_tokens); inf when the loss overflows, nan for zero tokens."""
    loss, tokens = float(total_loss), int(total_tokens)
    if tokens == 0:
        return math.nan
    mean = loss / tokens
    return math.exp(mean) if mean < 700 else math.inf


class LMLoss(nn.Module):
    """Token-mean CE of an LM head, from hidden states; causal (``shift=True``) or seq2seq.

    Config: ``_target_: headstart.losses.lm.LMLoss``, ``shift: true`` for GPT-2,
    ``shift: false`` for BART/T5 decoder labels and for masked LM.
    """

    def __init__(
        self, shift: bool, chunk_size: int = 1024, label_smoothing: float = 0.0, ignore_index: int = -100
    ) -> None:
        super().__init__()
        self.shift = shift
        self.chunk_size = chunk_size
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index

    def forward(
        self,
        hidden_states: torch.Tensor,
        lm_head_weight: torch.Tensor,
        labels: torch.Tensor,
        lm_head_bias: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """hidden_states: [B, T, D]; lm_head_weight: [V, D]; labels: [B, T]; lm_head_bias: [V].

        Returns {"loss" (differentiable), "lm_loss" (detached), "num_tokens" (float, detached)}.
        """
        targets = shift_labels_left(labels, self.ignore_index) if self.shift else labels
        loss_sum, count = linear_cross_entropy_sum(
            hidden_states, lm_head_weight, targets, lm_head_bias,
            chunk_size=self.chunk_size, label_smoothing=self.label_smoothing, ignore_index=self.ignore_index,
        )
        loss = loss_sum / count.clamp(min=1)
        return {"loss": loss, "lm_loss": loss.detach(), "num_tokens": count.detach().float()}
