"""CTC decoding: greedy best path, and beam search with an optional KenLM n-gram.

Pure functions over a token list in id order (HF ``vocab.json`` layout: the blank is
``<pad>``, ``|`` stands for a space). Beam search uses torchaudio's flashlight-based
``ctc_decoder``, which needs the ``flashlight-text`` package (an extra); without it
:func:`beam_decoder` raises an ImportError that says what to install.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch

BLANK, DELIMITER, SPECIALS = "<pad>", "|", ("<pad>", "<s>", "</s>")
Decoder = Callable[[torch.Tensor, torch.Tensor], list[str]]


def ids_to_text(ids: Sequence[int], tokens: Sequence[str], collapse_repeats: bool = True) -> str:
    """Label ids -> text: merge repeats (CTC), drop blank/specials, ``|`` -> space, squeeze spaces."""
    if collapse_repeats:
        ids = [i for k, i in enumerate(ids) if k == 0 or i != ids[k - 1]]
    pieces = (tokens[i] for i in ids if tokens[i] not in SPECIALS)
    text = "".join(" " if piece == DELIMITER else piece for piece in pieces)
    return re.sub(r" +", " ", text).strip()


def greedy_decode(logits: torch.Tensor, lengths: torch.Tensor | None, tokens: Sequence[str]) -> list[str]:
    """Best-path decoding.

    logits: [B, F, V] scores (or [B, F] argmax ids); lengths: [B] valid frames or None.
    Returns B strings; one device->host transfer for the batch.
    """
    ids = logits.argmax(-1) if logits.is_floating_point() else logits
    rows = ids.cpu().tolist()
    lens = lengths.cpu().tolist() if lengths is not None else [len(r) for r in rows]
    return [ids_to_text(row[:n], tokens) for row, n in zip(rows, lens)]


def has_beam_search() -> bool:
    """Whether torchaudio's flashlight-based CTC decoder can be imported."""
    import importlib.util

    return importlib.util.find_spec("flashlight") is not None and importlib.util.find_spec("flashlight.lib.text") is not None


def beam_decoder(
    tokens: Sequence[str],
    beam_size: int = 50,
    lm_path: str | None = None,
    lexicon_path: str | None = None,
    lm_weight: float = 2.0,
    word_score: float = 0.0,
    unk_score: float = float("-inf"),
    sil_score: float = 0.0,
) -> Decoder:
    """A beam-search decoder over ``tokens`` (torchaudio ``ctc_decoder``; KenLM when ``lm_path``).

    Returns ``decode(logits [B, F, V], lengths [B]) -> list[str]``. Without a lexicon the
    search is lexicon-free (any character sequence), with the LM scoring words.
    """
    if not has_beam_search():
        raise ImportError("beam search needs flashlight-text: pip install flashlight-text (or task.decoding=greedy)")
    from torchaudio.models.decoder import ctc_decoder

    if DELIMITER not in tokens or BLANK not in tokens:
        raise ValueError(f"beam search needs {BLANK!r} and {DELIMITER!r} in the vocabulary")
    decoder = ctc_decoder(
        lexicon=lexicon_path, tokens=list(tokens), lm=lm_path, beam_size=beam_size, lm_weight=lm_weight,
        word_score=word_score, unk_word="<unk>", unk_score=unk_score, sil_score=sil_score,
        blank_token=BLANK, sil_token=DELIMITER,
    )  # fmt: skip

    def decode(logits: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        emissions = logits.float().log_softmax(-1).cpu().contiguous()
        hypotheses = decoder(emissions, lengths.cpu().int())
        return [ids_to_text(hyp[0].tokens.tolist(), tokens) if hyp else "" for hyp in hypotheses]

    return decode
