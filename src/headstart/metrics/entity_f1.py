"""Entity-level precision / recall / F1 for tagged sequences, as seqeval (and conlleval) count them.

An entity is a maximal chunk (type, first, last); a predicted entity is a true positive only when
a gold entity has the same type and the same boundaries. Chunks are read with seqeval's default
(conlleval) rules, which serve IOB1, IOB2 and IOBES alike: a chunk starts at B-/S-, at an I-/E-
that follows O or another type, or at a type change; it ends before B-/S-/O, after E-/S-, or at a
type change. So in IOB1 an I- tag opens an entity and B- only separates two adjacent entities of
one type; in IOB2 a stray I- opens an entity too (conlleval behaviour).
``strict=True`` (IOB2 and IOBES only) instead keeps only well-formed entities, as seqeval's
``mode="strict"``: B-X I-X* for IOB2, S-X or B-X I-X* E-X for IOBES.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torchmetrics import Metric

Chunk = tuple[str, int, int]
_PREFIXES = {"IOB1": "BIO", "IOB2": "BIO", "IOBES": "BIOES"}


def _split(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', '_') as seqeval does."""
    if tag == "O":
        return "O", "_"
    return tag[0], tag[2:] or "_"


def _chunk_ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if prev_tag in "ES":
        return True
    if prev_tag in "BI" and tag in "BSO":
        return True
    return prev_tag != "O" and prev_type != type_


def _chunk_starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if tag in "BS":
        return True
    if prev_tag in "ESO" and tag in "EI":
        return True
    return tag != "O" and prev_type != type_


def get_entities(tags: Sequence[str]) -> list[Chunk]:
    """Chunks (type, first, last) of one tag sequence under seqeval's default rules."""
    chunks: list[Chunk] = []
    prev_tag, prev_type, begin = "O", "_", 0
    for i, tag_name in enumerate([*tags, "O"]):
        tag, type_ = _split(tag_name)
        if _chunk_ends(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _chunk_starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def get_strict_entities(tags: Sequence[str], scheme: Literal["IOB2", "IOBES"]) -> list[Chunk]:
    """Only well-formed chunks: B-X I-X* (IOB2) or S-X / B-X I-X* E-X (IOBES)."""
    chunks: list[Chunk] = []
    open_type, begin = None, 0
    for i, tag_name in enumerate([*tags, "O"]):
        tag, type_ = _split(tag_name)
        continues = open_type == type_ and tag == "I"
        if scheme == "IOBES" and open_type == type_ and tag == "E":
            chunks.append((type_, begin, i))
            open_type = None
            continue
        if open_type is not None and not continues:
            if scheme == "IOB2":
                chunks.append((open_type, begin, i - 1))
            open_type = None  # IOBES: a B- never closed by E- is not an entity
        if tag == "B":
            open_type, begin = type_, i
        elif tag == "S" and scheme == "IOBES":
            chunks.append((type_, i, i))
    return chunks


class EntityF1(Metric):
    """Micro precision / recall / F1 over entities, plus F1 per entity type.

    update(preds [B, L] label ids or [B, L, C] logits, target [B, L] label ids); positions where
    target == ignore_index (special tokens, non-first sub-tokens) are dropped from both before
    chunking. States are per-type counts summed across DDP ranks.
    compute() -> {"precision", "recall", "f1", "f1_<TYPE>" for each type} in [0, 1].
    """

    full_state_update = False
    higher_is_better = True

    def __init__(
        self,
        label_names: Sequence[str],
        scheme: Literal["IOB1", "IOB2", "IOBES"] = "IOB2",
        strict: bool = False,
        ignore_index: int = -100,
    ) -> None:
        super().__init__()
        allowed = _PREFIXES[scheme]
        for name in label_names:
            if name != "O" and not (len(name) > 2 and name[0] in allowed and name[1] == "-"):
                raise ValueError(f"label '{name}' is not a {scheme} tag (expected O or {'/'.join(allowed)}-TYPE)")
        if strict and scheme == "IOB1":
            raise ValueError("strict=True is defined for IOB2 and IOBES only")
        self.label_names = list(label_names)
        self.scheme, self.strict, self.ignore_index = scheme, strict, ignore_index
        self.types = sorted({_split(n)[1] for n in label_names if n != "O"})
        self._type_index = {t: i for i, t in enumerate(self.types)}
        n = len(self.types)
        for state in ("tp", "n_pred", "n_gold"):
            self.add_state(state, default=torch.zeros(n, dtype=torch.long), dist_reduce_fx="sum")

    def _entities(self, ids: list[int]) -> set[Chunk]:
        tags = [self.label_names[i] for i in ids]
        if self.strict:
            return set(get_strict_entities(tags, self.scheme))  # type: ignore[arg-type]
        return set(get_entities(tags))

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.dim() == target.dim() + 1:
            preds = preds.argmax(dim=-1)
        # one host transfer per batch: chunking is sequential, and eval batches are few
        preds_l, target_l = preds.detach().cpu().tolist(), target.detach().cpu().tolist()
        counts = torch.zeros(3, len(self.types), dtype=torch.long)
        for pred_row, gold_row in zip(preds_l, target_l):
            kept = [(p, g) for p, g in zip(pred_row, gold_row) if g != self.ignore_index]
            pred_chunks = self._entities([p for p, _ in kept])
            gold_chunks = self._entities([g for _, g in kept])
            for row, chunks in ((0, pred_chunks & gold_chunks), (1, pred_chunks), (2, gold_chunks)):
                for chunk in chunks:
                    counts[row, self._type_index[chunk[0]]] += 1
        counts = counts.to(self.tp.device)
        self.tp += counts[0]
        self.n_pred += counts[1]
        self.n_gold += counts[2]

    def compute(self) -> dict[str, torch.Tensor]:
        tp, n_pred, n_gold = self.tp.double(), self.n_pred.double(), self.n_gold.double()
        precision, recall, f1 = _prf(tp.sum(), n_pred.sum(), n_gold.sum())
        out = {"precision": precision, "recall": recall, "f1": f1}
        for i, entity_type in enumerate(self.types):
            out[f"f1_{entity_type}"] = _prf(tp[i], n_pred[i], n_gold[i])[2]
        return {k: v.float() for k, v in out.items()}


def _prf(tp: torch.Tensor, n_pred: torch.Tensor, n_gold: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Precision, recall, F1 with 0 where a denominator is 0 (seqeval's zero_division default)."""
    precision = torch.where(n_pred > 0, tp / n_pred.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(n_gold > 0, tp / n_gold.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
    return precision, recall, f1
