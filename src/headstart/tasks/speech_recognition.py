"""CTC speech recognition: waveform -> wav2vec2 frames -> linear over characters -> CTC loss."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import Metric, MetricCollection

from headstart.ops.ctc_decode import SPECIALS, Decoder, beam_decoder, greedy_decode
from headstart.ops.padding import log_padding
from headstart.tasks.base import Task
from headstart.tasks.export import HFExport, require_layout, say, wav2vec2_model
from headstart.viz.audio import audio_players


class SpeechRecognitionTask(Task):
    """Batches carry ``waveforms`` [B, T], ``lengths`` [B], ``labels`` [B, S] (character ids),
    ``label_lengths`` [B] and ``texts`` (normalised transcripts, the WER/CER references).

    vocab: tokens in id order (``<pad>`` is the CTC blank, ``|`` the word delimiter); from the
    data, saved in the checkpoint. head: partial (in_features, num_classes) -> [B, F, V].
    loss: partial taking ``blank``. metrics: name -> torchmetrics text metric (wer, cer).
    decoding: ``greedy`` (best path) or ``beam`` (torchaudio's CTC decoder, optional KenLM
    ``beam.lm_path``; needs flashlight-text). A fine-tuned CTC checkpoint's head is kept when
    its vocabulary equals ``vocab``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: Callable[..., nn.Module],
        loss: Callable[..., nn.Module],
        metrics: dict[str, Metric],
        vocab: list[str],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr: float | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
        decoding: Literal["greedy", "beam"] = "greedy",
        beam: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, backbone_lr, lr_interval)
        self.vocab = list(vocab)
        if "<pad>" not in self.vocab:
            raise ValueError("the CTC vocabulary needs a '<pad>' token (the blank)")
        self.head = head(in_features=backbone.hidden_size, num_classes=len(self.vocab))
        self._keep_pretrained_head(backbone)
        self.loss_fn = loss(blank=self.vocab.index("<pad>"))
        self.val_metrics = MetricCollection(dict(metrics), prefix="val/")
        self.test_metrics = self.val_metrics.clone(prefix="test/")
        self.decoding = decoding
        self.beam = dict(beam or {})
        self._beam: Decoder | None = None
        if decoding == "beam":
            self._beam = beam_decoder(self.vocab, **self.beam)  # fails now, not after training, without the extra

    def _keep_pretrained_head(self, backbone: nn.Module) -> None:
        pretrained = getattr(backbone, "pretrained_ctc_head", None)
        if pretrained is None:
            return
        if backbone.pretrained_vocab == {tok: i for i, tok in enumerate(self.vocab)}:
            self.head.proj.load_state_dict(pretrained.state_dict())
            self.kept_head = say(f"model.checkpoint={backbone.checkpoint}: kept its CTC head (the same vocabulary)")
        else:
            rank_zero_warn("the checkpoint's CTC head was not kept: its vocabulary differs from the data's")

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """waveforms [B, T], lengths [B] -> (logits [B, F, V], valid frames [B])."""
        out = self.backbone(waveforms, lengths)
        return self.head(out.hidden_states), out.extras["lengths"]

    def decode(self, logits: torch.Tensor, frame_lengths: torch.Tensor) -> list[str]:
        """logits [B, F, V], frame_lengths [B] -> B transcripts (greedy or beam search)."""
        if self._beam is not None:
            return self._beam(logits, frame_lengths)
        return greedy_decode(logits, frame_lengths, self.vocab)

    def hf_export(self, validate_only: bool = False) -> HFExport | None:
        """``Wav2Vec2ForCTC`` (the encoder, dropout, one linear layer per frame: this head) and a
        ``Wav2Vec2Processor`` whose CTC tokenizer holds this run's vocabulary (``<pad>`` the blank,
        ``|`` the word delimiter, ids as the head's rows), so greedy decoding gives predict.py's text."""
        import tempfile

        from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2ForCTC, Wav2Vec2Processor

        require_layout(self.head, {"dropout": nn.Dropout, "proj": nn.Linear}, "speech_recognition", "Wav2Vec2ForCTC")
        if validate_only:
            return None
        model, extractor = wav2vec2_model(self.backbone, Wav2Vec2ForCTC, vocab_size=len(self.vocab),
                                          pad_token_id=self.vocab.index("<pad>"), ctc_loss_reduction="mean")
        with torch.no_grad():
            model.lm_head.load_state_dict(self.head.proj.state_dict())
        specials = {name: token if token in self.vocab else None
                    for name, token in (("unk_token", "<unk>"), ("bos_token", "<s>"), ("eos_token", "</s>"))}
        with tempfile.TemporaryDirectory() as folder:
            vocab_file = Path(folder) / "vocab.json"
            vocab_file.write_text(json.dumps({tok: i for i, tok in enumerate(self.vocab)}, ensure_ascii=False))
            tokenizer = Wav2Vec2CTCTokenizer(str(vocab_file), pad_token="<pad>", word_delimiter_token="|", **specials)
        return HFExport(model.eval(), [Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer)],
                        "automatic-speech-recognition")

    def on_fit_start(self) -> None:
        """Write the vocabulary as HF's vocab.json beside the run's checkpoints (for LM decoders)."""
        if self.trainer.is_global_zero and self.trainer.default_root_dir:
            path = Path(self.trainer.default_root_dir) / "vocab.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({tok: i for i, tok in enumerate(self.vocab)}, ensure_ascii=False, indent=1))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.backbone.update_freeze(self.global_step)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if batch["lengths"].numel() == 0:  # every clip of the batch was skipped as bad input
            return None
        logits, frames = self(batch["waveforms"], batch["lengths"])
        terms = self.loss_fn(logits, frames, batch["labels"], batch["label_lengths"])
        size = batch["lengths"].shape[0]
        self.log_terms("train", terms, batch_size=size)
        log_padding(self, batch)
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any] | None:
        return self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any] | None:
        return self._evaluate(batch, "test", self.test_metrics)

    def _evaluate(self, batch: dict[str, Any], stage: str, metrics: MetricCollection) -> dict[str, Any] | None:
        if batch["lengths"].numel() == 0:
            return None
        logits, frames = self(batch["waveforms"], batch["lengths"])
        terms = self.loss_fn(logits, frames, batch["labels"], batch["label_lengths"])
        self.log_terms(stage, terms, batch_size=batch["lengths"].shape[0])
        predictions = self.decode(logits, frames)
        metrics.update(predictions, batch["texts"])
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return {"predictions": predictions}

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per file: its path, transcript (chunks of long files joined with spaces) and the
        greedy per-frame ``alignment`` [[start_s, end_s, token], ...] (what predict.visualize draws)."""
        if not batch["paths"]:
            return []
        logits, frames = self(batch["waveforms"], batch["lengths"])
        pieces = self.decode(logits, frames)
        texts: list[list[str]] = [[] for _ in batch["paths"]]
        alignments: list[list[list[Any]]] = [[] for _ in batch["paths"]]
        offsets = [0] * len(batch["paths"])  # samples of a file's earlier chunks
        frame_seconds = self.backbone.frame_stride / self.backbone.sample_rate
        rows = zip(batch["owners"].tolist(), pieces, logits.argmax(-1).cpu().tolist(), frames.tolist(), batch["lengths"].tolist())
        for owner, piece, ids, n, samples in rows:
            if piece:
                texts[owner].append(piece)
            alignments[owner] += ctc_segments(ids[:n], self.vocab, frame_seconds, offsets[owner] / self.backbone.sample_rate)
            offsets[owner] += samples
        return [
            {"input": path, "transcript": " ".join(parts), "chunks": int((batch["owners"] == i).sum()), "alignment": segments}
            for i, (path, parts, segments) in enumerate(zip(batch["paths"], texts, alignments))
        ]

    def visualize(self, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
        """One PNG per file: waveform and log-mel spectrogram, the greedy CTC characters at their frames under it."""
        from headstart.viz.audio import transcript_png
        from headstart.viz.figure import draw_each, file_stem

        def draw(i: int, record: dict[str, Any], out: Path) -> list[Path]:
            png = out / f"{file_stem(i, record['input'])}.png"
            return [transcript_png(png, record["input"], record["transcript"], record.get("alignment", []))]

        return draw_each(records, out_dir, draw)

    def media(self, batch: dict[str, Any], outputs: Any, max_items: int) -> dict[str, list[Any]]:
        captions = [f"pred: {p!r} / true: {t!r}" for p, t in zip(outputs["predictions"][:max_items], batch["texts"])]
        return {"val/examples": audio_players(batch["waveforms"], batch["lengths"], self.backbone.sample_rate, captions)}


def ctc_segments(ids: list[int], vocab: list[str], frame_seconds: float, offset: float = 0.0) -> list[list[Any]]:
    """Best-path frame ids [F] -> [[start_s, end_s, token], ...]: one entry per run of a non-blank
    token (blank and specials dropped; ``|`` is a word gap), times from ``offset`` seconds."""
    segments: list[list[Any]] = []
    for k, i in enumerate(ids):
        if vocab[i] in SPECIALS:
            continue
        end = round(offset + (k + 1) * frame_seconds, 3)
        if k > 0 and ids[k - 1] == i:
            segments[-1][1] = end
        else:
            segments.append([round(offset + k * frame_seconds, 3), end, vocab[i]])
    return segments
