"""Train a small tokenizer on the fly (``tokenizers``) and wrap it for transformers.

Tiny presets have no hub tokenizer to download, so one is trained on the synthetic texts in
about a second and saved beside the model (``tokenizer.save_pretrained(dir)``; it reloads with
``AutoTokenizer.from_pretrained(dir)`` offline). Each family gets its usual model, special
tokens, ids and post-processor, so family code (collators, generation) behaves as with the real
checkpoint:

==========  =============  =====================================================  ==================
family      kind           special tokens (ids)                                   added around text
==========  =============  =====================================================  ==================
bert        wordpiece      [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, lowercased   [CLS] A [SEP] B [SEP]
gpt2        bytelevel_bpe  <|endoftext|>=0 (bos/eos/unk), <|pad|>=1                nothing
bart        bytelevel_bpe  <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4                  <s> A </s></s> B </s>
t5          unigram        <pad>=0 </s>=1 <unk>=2, <extra_id_0> = last id         A </s> B </s>
==========  =============  =====================================================  ==================

``vocab_size`` is the size of the whole vocabulary, T5's sentinels included; size the model's
embeddings with ``len(tokenizer)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

Kind = Literal["wordpiece", "bytelevel_bpe", "unigram"]
Family = Literal["bert", "gpt2", "bart", "t5"]

FAMILY_KIND: dict[str, Kind] = {"bert": "wordpiece", "gpt2": "bytelevel_bpe", "bart": "bytelevel_bpe", "t5": "unigram"}
_DEFAULT_FAMILY: dict[str, Family] = {"wordpiece": "bert", "bytelevel_bpe": "gpt2", "unigram": "t5"}


def _bert(texts: Iterable[str], vocab_size: int) -> tuple[Tokenizer, dict]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)  # uncased: also strips accents
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    names = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
             "mask_token": "[MASK]", "do_lower_case": True,
             "model_input_names": ["input_ids", "token_type_ids", "attention_mask"]}  # segments for NSP
    return tok, names


def _byte_level_bpe(texts: Iterable[str], vocab_size: int, specials: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def _gpt2(texts: Iterable[str], vocab_size: int) -> tuple[Tokenizer, dict]:
    tok = _byte_level_bpe(texts, vocab_size, ["<|endoftext|>", "<|pad|>"])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # a pad distinct from EOS, so padding can be masked by id without losing EOS targets
    names = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
             "pad_token": "<|pad|>"}
    return tok, names


def _bart(texts: Iterable[str], vocab_size: int) -> tuple[Tokenizer, dict]:
    tok = _byte_level_bpe(texts, vocab_size, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    # like BART's: "<mask>" takes the space before it, so " <mask>" infills a whole word
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, special=True)])
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")), trim_offsets=True, add_prefix_space=False
    )
    names = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
             "unk_token": "<unk>", "pad_token": "<pad>",
             "mask_token": AddedToken("<mask>", lstrip=True, rstrip=False, special=True)}
    return tok, names


def _t5(texts: Iterable[str], vocab_size: int, extra_ids: int) -> tuple[Tokenizer, dict]:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" {2,}", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size - extra_ids, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    # like T5: sentinels take the last ids, <extra_id_0> the very last
    sentinels = [f"<extra_id_{i}>" for i in reversed(range(extra_ids))]
    tok.add_special_tokens([AddedToken(s, special=True) for s in sentinels])
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)]
    )
    names = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
             "extra_special_tokens": sentinels[::-1]}
    return tok, names


def train_tokenizer(
    texts: Iterable[str],
    kind: Kind,
    vocab_size: int,
    family: Family | None = None,
    extra_ids: int = 100,
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """Train a ``kind`` tokenizer on ``texts`` with ``family``'s special tokens (see module table).

    family: defaults to bert for wordpiece, gpt2 for bytelevel_bpe, t5 for unigram; it must use
    ``kind``. vocab_size: an upper bound (a small corpus may yield fewer pieces). extra_ids:
    T5 sentinel count. Returns a fast tokenizer with offsets and ``word_ids()``.
    """
    family = family or _DEFAULT_FAMILY[kind]
    if FAMILY_KIND.get(family) != kind:
        raise ValueError(f"tokenizer family '{family}' uses {FAMILY_KIND.get(family)}, not {kind}")
    if family == "t5":
        if vocab_size <= extra_ids + 3:
            raise ValueError(f"t5 vocab_size {vocab_size} leaves no room beside {extra_ids} sentinels")
        tok, names = _t5(texts, vocab_size, extra_ids)
    else:
        tok, names = {"bert": _bert, "gpt2": _gpt2, "bart": _bart}[family](texts, vocab_size)
    padding_side = "right"
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=model_max_length, padding_side=padding_side, **names
    )
