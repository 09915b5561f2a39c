"""Character vocabulary for CTC speech recognition, compatible with Hugging Face's vocab.json.

Layout of a built vocabulary: ``<pad>`` (the CTC blank) at 0, ``<unk>`` at 1, ``|`` (word
delimiter, stands for a space) at 2, then the characters of the training transcripts in
sorted order. A loaded HF ``vocab.json`` keeps its own ids (``<s>``/``</s>`` included), so
a fine-tuned checkpoint's CTC head lines up with it.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import torch

PAD, UNK, DELIMITER = "<pad>", "<unk>", "|"
Case = Literal["lower", "upper", "keep"]


class UnknownCharacterError(ValueError):
    """A transcript holds a character the vocabulary does not know."""


class CtcVocab:
    """Maps transcripts to CTC label ids and greedy-decodes CTC outputs back to text.

    Args:
        tokens: token strings in id order (must contain ``<pad>`` and ``|``).
        case: text normalisation of letters before lookup.
        strip_punctuation: drop Unicode punctuation except the characters in ``keep``.
        keep: punctuation kept (the apostrophe of "don't" is part of LibriSpeech's alphabet).
        collapse_spaces: squeeze runs of whitespace and trim the ends.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        case: Case = "lower",
        strip_punctuation: bool = True,
        keep: str = "'",
        collapse_spaces: bool = True,
    ) -> None:
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary tokens must be unique")
        for required in (PAD, DELIMITER):
            if required not in tokens:
                raise ValueError(f"vocabulary must contain {required!r}")
        self.tokens = list(tokens)
        self.token_to_id = {tok: i for i, tok in enumerate(self.tokens)}
        self.case = case
        self.strip_punctuation = strip_punctuation
        self.keep = keep
        self.collapse_spaces = collapse_spaces

    @property
    def blank_id(self) -> int:
        """Id of the CTC blank (``<pad>``, as in HF's Wav2Vec2CTCTokenizer)."""
        return self.token_to_id[PAD]

    @property
    def unk_id(self) -> int | None:
        return self.token_to_id.get(UNK)

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1, **normalisation: object) -> CtcVocab:
        """Collect the characters of normalised ``texts`` (seen at least ``min_count`` times)."""
        probe = cls([PAD, UNK, DELIMITER], **normalisation)  # type: ignore[arg-type]
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(probe.normalize(text).replace(" ", ""))
        chars = sorted(c for c, k in counts.items() if k >= min_count)
        return cls([PAD, UNK, DELIMITER, *chars], **normalisation)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path, case: Case | None = None, **normalisation: object) -> CtcVocab:
        """Read a ``vocab.json`` ({token: id}); ``case=None`` follows the case of its letters."""
        mapping = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls.from_dict(mapping, case=case, **normalisation)

    @classmethod
    def from_dict(cls, mapping: dict[str, int], case: Case | None = None, **normalisation: object) -> CtcVocab:
        """Build from an HF-style {token: id} mapping (ids must be 0..V-1)."""
        if not all(isinstance(v, int) for v in mapping.values()):
            raise ValueError("expected a flat {token: id} vocabulary (multilingual nested vocabs are not supported)")
        if sorted(mapping.values()) != list(range(len(mapping))):
            raise ValueError("vocabulary ids must be 0..V-1 without gaps")
        tokens = sorted(mapping, key=mapping.__getitem__)
        return cls(tokens, case=case or _infer_case(tokens), **normalisation)  # type: ignore[arg-type]

    def save(self, path: str | Path) -> None:
        """Write ``vocab.json`` as HF does: a JSON object {token: id}."""
        Path(path).write_text(json.dumps(self.token_to_id, ensure_ascii=False, indent=1), encoding="utf-8")

    def normalize(self, text: str) -> str:
        """Apply case folding, punctuation stripping and whitespace collapsing."""
        if self.case == "lower":
            text = text.lower()
        elif self.case == "upper":
            text = text.upper()
        if self.strip_punctuation:
            text = "".join(
                c for c in text if c in self.keep or not unicodedata.category(c).startswith("P")
            )
        if self.collapse_spaces:
            text = re.sub(r"\s+", " ", text).strip()
        return text

    def encode(self, text: str, strict: bool = True) -> list[int]:
        """Normalised ``text`` -> label ids, spaces as ``|``.

        strict: raise :class:`UnknownCharacterError` naming the character (default), else map
        it to ``<unk>``.
        """
        ids = []
        for char in self.normalize(text):
            token = DELIMITER if char == " " else char
            idx = self.token_to_id.get(token)
            if idx is None:
                if strict or self.unk_id is None:
                    raise UnknownCharacterError(
                        f"character {char!r} (U+{ord(char):04X}) in {text!r} is not in the vocabulary"
                    )
                idx = self.unk_id
            ids.append(idx)
        return ids

    def decode_ids(self, ids: Sequence[int], collapse_repeats: bool = False) -> str:
        """Label ids -> text: optionally merge repeats, drop blanks/specials, ``|`` -> space."""
        if collapse_repeats:
            ids = [i for k, i in enumerate(ids) if k == 0 or i != ids[k - 1]]
        skip = {self.token_to_id.get(t) for t in (PAD, "<s>", "</s>")}
        text = "".join(" " if self.tokens[i] == DELIMITER else self.tokens[i] for i in ids if i not in skip)
        return re.sub(r" +", " ", text).strip()

    def ctc_decode(self, outputs: torch.Tensor, lengths: torch.Tensor | None = None) -> list[str]:
        """Greedy (best-path) CTC decoding.

        outputs: [B, F, V] logits / log-probs, or [B, F] label ids.
        lengths: [B] valid frames per example (None: all F frames).
        Returns B strings. One device->host transfer for the whole batch.
        """
        ids = outputs.argmax(dim=-1) if outputs.is_floating_point() else outputs
        rows = ids.cpu().tolist()
        if lengths is None:
            lens = [len(row) for row in rows]
        else:
            lens = lengths.cpu().tolist()
        return [self.decode_ids(row[:n], collapse_repeats=True) for row, n in zip(rows, lens)]


def _infer_case(tokens: Sequence[str]) -> Case:
    letters = [t for t in tokens if len(t) == 1 and t.isalpha()]
    if letters and all(t.isupper() for t in letters):
        return "upper"
    if letters and all(t.islower() for t in letters):
        return "lower"
    return "keep"
