"""Wav2Vec2Backbone: tiny preset, padding invariance, HF import parity, freezing, SpecAugment."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import transformers

from headstart.backbones.base import HubUnreachableError
from headstart.backbones.wav2vec2 import TINY, Wav2Vec2Backbone
from headstart.ops.span_mask import span_mask


def _tiny(**kwargs: object) -> Wav2Vec2Backbone:
    torch.manual_seed(0)
    return Wav2Vec2Backbone(preset="tiny", **kwargs)  # type: ignore[arg-type]


def _hf_config(**kwargs: object) -> transformers.Wav2Vec2Config:
    return transformers.Wav2Vec2Config(
        vocab_size=7, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=True, feat_extract_norm="layer", conv_bias=True, mask_time_prob=0.05, **kwargs,
    )  # fmt: skip


def test_tiny_preset_builds_fast_offline() -> None:
    start = time.perf_counter()
    backbone = _tiny()
    assert time.perf_counter() - start < 2.0
    assert (backbone.hidden_size, backbone.sample_rate, backbone.frame_stride) == (64, 16000, 320)
    assert backbone.pretrained_ctc_head is None


def test_forward_shapes_and_lengths() -> None:
    backbone = _tiny().eval()
    lengths = torch.tensor([16000, 9000])
    out = backbone(torch.randn(2, 16000), lengths)
    frames = backbone.output_lengths(lengths)
    assert frames.tolist() == [49, 27]  # floor division layer by layer
    assert backbone(torch.randn(1, 9000)).hidden_states.shape[1] == 27
    assert out.hidden_states.shape == (2, 49, 64)
    assert out.attention_mask.sum(1).tolist() == frames.tolist()
    assert out.extras["lengths"].tolist() == frames.tolist()
    unpadded = backbone(torch.randn(2, 16000))
    assert unpadded.attention_mask.all()


def _padding_gap(backbone: Wav2Vec2Backbone) -> float:
    torch.manual_seed(1)
    clips = [torch.randn(8000), torch.randn(12345)]
    batch = torch.zeros(2, 16000)  # padded beyond the longest clip too
    for i, clip in enumerate(clips):
        batch[i, : len(clip)] = clip
    with torch.no_grad():
        out = backbone(batch, torch.tensor([len(c) for c in clips]))
        gap = 0.0
        for i, clip in enumerate(clips):
            alone = backbone(clip[None]).hidden_states[0]
            gap = max(gap, (out.hidden_states[i, : len(alone)] - alone).abs().max().item())
    return gap


def test_padded_batch_matches_each_clip_alone() -> None:
    assert _padding_gap(_tiny().eval()) < 1e-5


def test_group_norm_extractor_is_not_padding_invariant() -> None:
    # Why the tiny preset uses the layer-norm extractor: group norm sees the padding.
    presets = {"gn": {**TINY, "extractor_mode": "group_norm"}}
    torch.manual_seed(0)
    backbone = Wav2Vec2Backbone(preset="gn", presets=presets).eval()
    assert _padding_gap(backbone) > 1e-3


def test_import_of_hf_ctc_checkpoint_matches_transformers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    hf = transformers.Wav2Vec2ForCTC(_hf_config()).eval()
    hf.save_pretrained(tmp_path)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "a": 5, "b": 6}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    backbone = Wav2Vec2Backbone(checkpoint=str(tmp_path)).eval()
    assert backbone.pretrained_vocab == vocab
    assert torch.equal(backbone.masked_spec_embed.data, hf.wav2vec2.masked_spec_embed.data)
    head = backbone.pretrained_ctc_head
    assert isinstance(head, torch.nn.Linear) and head.out_features == 7
    assert not any(name.startswith("model.aux") for name, _ in backbone.named_parameters())

    waves = torch.randn(2, 12000)
    lengths = torch.tensor([12000, 7000])
    mask = (torch.arange(12000)[None] < lengths[:, None]).long()
    waves = waves * mask
    with torch.no_grad():
        ref = hf(waves, attention_mask=mask).logits
        out = backbone(waves, lengths)
        logits = head(out.hidden_states)
    valid = out.attention_mask.bool()
    assert logits.shape == ref.shape
    assert torch.allclose(logits[valid], ref[valid], atol=1e-5)


def test_import_of_hf_base_model_matches_hidden_states(tmp_path: Path) -> None:
    torch.manual_seed(0)
    hf = transformers.Wav2Vec2Model(_hf_config()).eval()
    hf.save_pretrained(tmp_path)
    backbone = Wav2Vec2Backbone(checkpoint=str(tmp_path)).eval()
    assert backbone.pretrained_ctc_head is None and backbone.pretrained_vocab is None
    waves = torch.randn(2, 8000)
    with torch.no_grad():
        ref = hf(waves).last_hidden_state
        out = backbone(waves).hidden_states
    assert torch.allclose(out, ref, atol=1e-5)


def test_unreachable_checkpoint_is_one_line_naming_ways_out() -> None:
    with pytest.raises(HubUnreachableError) as info:
        Wav2Vec2Backbone(checkpoint="headstart-test/no-such-wav2vec2")
    message = str(info.value)
    assert "\n" not in message and "model.preset=tiny" in message and "model.checkpoint" in message


def test_unknown_preset_and_bundle_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="tiny"):
        Wav2Vec2Backbone(preset="huge")
    with pytest.raises(ValueError, match="WAV2VEC2_BASE"):
        Wav2Vec2Backbone(checkpoint="WAV2VEC2_NOPE")


def test_feature_encoder_follows_what_is_loaded_by_default(tmp_path: Path) -> None:
    """auto: a random conv stack (preset, pretrained=false) trains, SpecAugment off; weights from a
    checkpoint stay fixed, masking at fine-tuning's 0.05; true/false force it either way."""
    def frozen(backbone: Wav2Vec2Backbone) -> bool:
        return not any(p.requires_grad for p in backbone.model.feature_extractor.parameters())

    tiny = _tiny()
    assert not frozen(tiny) and tiny.mask_time_prob == 0.0 and tiny.masked_spec_embed is None
    torch.manual_seed(0)
    transformers.Wav2Vec2Model(_hf_config()).save_pretrained(tmp_path)
    loaded = Wav2Vec2Backbone(checkpoint=str(tmp_path))
    assert frozen(loaded) and loaded.mask_time_prob == 0.05 and loaded.masked_spec_embed is not None
    random = Wav2Vec2Backbone(checkpoint=str(tmp_path), pretrained=False)
    assert not frozen(random) and random.mask_time_prob == 0.0
    assert frozen(_tiny(freeze_feature_encoder=True)) and _tiny(mask_time_prob=0.05).mask_time_prob == 0.05
    assert not frozen(Wav2Vec2Backbone(checkpoint=str(tmp_path), freeze_feature_encoder=False))
    # a rebuild (random init) keeps what auto chose for the trained run, so the weights load back
    rebuilt = Wav2Vec2Backbone(**loaded.rebuild_kwargs())
    assert frozen(rebuilt) and rebuilt.mask_time_prob == 0.05
    assert rebuilt.state_dict().keys() == loaded.state_dict().keys()
    with pytest.raises(ValueError, match="auto|true|false"):
        _tiny(freeze_feature_encoder="yes")


def test_frozen_feature_encoder_gets_no_gradient_and_freeze_toggles() -> None:
    backbone = _tiny(freeze_feature_encoder=True)
    extractor = list(backbone.model.feature_extractor.parameters())
    encoder = list(backbone.model.encoder.parameters())
    assert not any(p.requires_grad for p in extractor) and all(p.requires_grad for p in encoder)
    backbone.train()
    backbone(torch.randn(2, 4000)).hidden_states.sum().backward()
    assert all(p.grad is None for p in extractor)
    assert all(p.grad is not None for p in backbone.model.encoder.transformer.layers.parameters())

    backbone.freeze(True)
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.freeze(False)
    assert not any(p.requires_grad for p in extractor) and all(p.requires_grad for p in encoder)
    assert all(p.requires_grad for p in _tiny(freeze_feature_encoder=False).parameters())


def test_masking_applies_in_train_mode_only() -> None:
    backbone = _tiny(mask_time_prob=0.5, mask_time_length=2, mask_feature_prob=0.3, mask_feature_length=4)
    waves, lengths = torch.randn(2, 16000), torch.tensor([16000, 12000])
    with torch.no_grad():
        ref = backbone.eval()(waves, lengths).hidden_states
        assert torch.equal(backbone(waves, lengths).hidden_states, ref)
        masked = backbone.train()(waves, lengths).hidden_states
        assert (masked - ref).abs().max() > 1e-3
        # The tiny preset has no dropout, so without masking train mode equals eval mode.
        backbone.mask_time_prob = backbone.mask_feature_prob = 0.0
        backbone.masked_spec_embed = None
        assert torch.allclose(backbone(waves, lengths).hidden_states, ref, atol=1e-6)


def test_span_mask_covers_requested_fraction_within_lengths() -> None:
    torch.manual_seed(0)
    lengths = torch.tensor([200, 100, 0])
    mask = span_mask(lengths, 200, prob=0.2, span=5)
    assert mask.shape == (3, 200)
    assert not mask[1, 100:].any() and not mask[2].any()
    frac = mask[0].float().mean().item()
    assert 0.08 < frac < 0.3  # 0.2 asked; overlapping spans cover a bit less
    runs = torch.diff(mask[0].int(), prepend=torch.zeros(1, dtype=torch.int))
    assert (runs == 1).sum() >= 1


def test_untrained_torchaudio_asr_bundle_exposes_head_and_vocab() -> None:
    backbone = Wav2Vec2Backbone(checkpoint="WAV2VEC2_ASR_BASE_10M", pretrained=False)
    vocab = backbone.pretrained_vocab
    assert vocab is not None and vocab["<pad>"] == 0 and vocab["|"] == 1
    assert backbone.pretrained_ctc_head.out_features == len(vocab)
    assert backbone.hidden_size == 768
