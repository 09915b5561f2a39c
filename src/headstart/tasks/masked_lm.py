"""Masked language modelling (BERT, DistilBERT, any encoder): MLM head tied to the embeddings (+ NSP).

The data side selects and corrupts the tokens (``data.masking.MLMCollator``: 15% of non-special
tokens, 80/10/10 mask/random/keep, optional whole words; with ``nsp`` sentence pairs, half with a
second segment from another document). Here: encoder -> hidden states -> MLM logits at the
selected positions only (``labels != -100``) -> CE; with NSP, BERT's pooler output -> 2-way CE.
The sum equals ``BertForPreTraining``'s loss on the same batch (tests/test_masked_lm.py).

Metrics: ``val/mlm_loss`` (token mean over the epoch), ``val/mlm_acc`` (selected positions only),
``val/perplexity`` (exp of the epoch's token-mean MLM loss), ``val/nsp_acc`` (with NSP).
At the end of fit the encoder is exported in the Hugging Face format (``tasks.pretraining``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from headstart.metrics.generation import TokenPerplexity
from headstart.tasks.base import Task
from headstart.tasks.encoder_text import encode, log_padding, wandb_table
from headstart.tasks.export import ExportError, HFExport, keep_checkpoint_head
from headstart.tasks.pretraining import ExportsPretrained


class MaskedLMTask(ExportsPretrained, Task):
    """Batches carry input_ids / attention_mask / token_type_ids [B, L] and ``labels`` [B, L]
    (original id at selected positions, -100 elsewhere) [+ ``next_sentence_label`` [B] with NSP].

    mlm_head: partial taking (in_features, vocab_size, activation, layer_norm_eps).
    nsp_head: partial taking (in_features, pooler); used when ``nsp`` (BERT's own pooler feeds it
    when the encoder has one, otherwise the head brings a pooler).
    loss: ``MaskedLMLoss``. noise: the masking settings (the data side applies them; kept for the
    record and checked against ``nsp``). vocab_size / pad_token_id / mask_token_id / special_ids:
    from the datamodule's tokenizer. predict_top_k: candidates per mask in predict.py.
    """

    def __init__(
        self,
        backbone: nn.Module,
        mlm_head: Callable[..., nn.Module],
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr: float | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
        nsp: bool = False,
        nsp_head: Callable[..., nn.Module] | None = None,
        noise: dict[str, Any] | None = None,
        vocab_size: int | None = None,
        pad_token_id: int | None = None,
        mask_token_id: int | None = None,
        special_ids: list[int] | None = None,
        predict_top_k: int = 5,
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, backbone_lr, lr_interval)
        self.noise = dict(noise or {})
        self.nsp = bool(nsp)
        if self.noise.get("nsp", self.nsp) != self.nsp:
            raise ValueError(f"task.nsp={self.nsp} but task.noise.nsp={self.noise['nsp']}: set task.nsp only")
        if mask_token_id is None:
            raise ValueError("masked_lm needs a tokenizer with a mask token (the data reported none)")
        self.mask_token_id = int(mask_token_id)
        self.pad_token_id = pad_token_id
        self.special_ids = list(special_ids or [])
        embeddings = backbone.input_embeddings()
        if vocab_size is not None and vocab_size > embeddings.num_embeddings:
            raise ValueError(f"the tokenizer has {vocab_size} tokens but the model's embeddings only {embeddings.num_embeddings}")
        config = backbone.model_config
        self.mlm_head = mlm_head(
            in_features=backbone.hidden_size,
            vocab_size=embeddings.num_embeddings,
            activation=getattr(config, "hidden_act", None) or getattr(config, "activation", "gelu"),
            layer_norm_eps=getattr(config, "layer_norm_eps", 1e-12),
        )
        self.nsp_head = None
        if self.nsp:
            self._check_nsp(backbone)
            if nsp_head is None:
                raise ValueError("task.nsp=true needs task.nsp_head")
            self.nsp_head = nsp_head(in_features=backbone.hidden_size, pooler=backbone.pooler_module() is None)
        self.kept_head = keep_mlm_head(backbone, self.mlm_head, self.nsp_head)
        self.loss_fn = loss
        metrics = {"mlm_loss": MeanMetric(), "mlm_acc": MeanMetric(), "perplexity": TokenPerplexity()}
        if self.nsp:
            metrics["nsp_acc"] = MeanMetric()
        self.val_metrics = MetricCollection(metrics, prefix="val/")
        self.test_metrics = self.val_metrics.clone(prefix="test/")
        self.predict_top_k = predict_top_k

    @staticmethod
    def _check_nsp(backbone: nn.Module) -> None:
        """NSP reads two segments: the encoder needs segment (token type) embeddings, as BERT has."""
        config = backbone.model_config
        if getattr(config, "type_vocab_size", 0) < 2:
            raise ValueError(
                f"task.nsp=true needs an encoder with segment embeddings (model=bert); "
                f"{config.model_type} has none: use task.nsp=false"
            )

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """-> {"mlm_logits": [N, V] at the N positions with labels != -100, "mlm_targets": [N],
        "nsp_logits": [B, 2] (NSP only)}."""
        hidden = encode(self.backbone, batch).hidden_states
        selected = batch["labels"] != -100
        out = {
            "mlm_logits": self.mlm_head(hidden[selected], self.backbone.input_embeddings().weight),
            "mlm_targets": batch["labels"][selected],
        }
        if self.nsp_head is not None:
            pooler = self.backbone.pooler_module()
            out["nsp_logits"] = self.nsp_head(pooler(hidden) if pooler is not None else hidden[:, 0])
        return out

    def _loss(self, out: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.loss_fn(out["mlm_logits"], out["mlm_targets"], out.get("nsp_logits"), batch.get("next_sentence_label"))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        terms = self._loss(self(batch), batch)
        self.log_terms("train", terms, batch_size=batch["input_ids"].shape[0])
        log_padding(self, batch, "train")
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "test", self.test_metrics)

    def _evaluate(self, batch: dict[str, Any], stage: str, metrics: MetricCollection) -> dict[str, torch.Tensor]:
        out = self(batch)
        logits, targets = out["mlm_logits"].float(), out["mlm_targets"]
        count = torch.tensor(targets.numel(), device=logits.device)
        if targets.numel():
            token_loss = nn.functional.cross_entropy(logits, targets, reduction="none")
            metrics["mlm_loss"].update(token_loss)
            metrics["mlm_acc"].update((logits.argmax(-1) == targets).float())
            metrics["perplexity"].update(token_loss.sum(), count)
        if "nsp_logits" in out:
            nsp_logits, nsp_labels = out["nsp_logits"], batch["next_sentence_label"]
            metrics["nsp_acc"].update((nsp_logits.argmax(-1) == nsp_labels).float())
            self.log(f"{stage}/nsp_loss", nn.functional.cross_entropy(nsp_logits.float(), nsp_labels),
                     on_step=False, on_epoch=True, batch_size=nsp_labels.numel(), sync_dist=True)
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return {"predicted": logits.argmax(-1).detach()}

    # ---- what a person looks at ------------------------------------------------------------------
    def _tokens(self, ids: list[int]) -> str:
        tokenizer = self.backbone.tokenizer
        ids = [i for i in ids if i != self.pad_token_id]
        return tokenizer.convert_tokens_to_string(tokenizer.convert_ids_to_tokens(ids))

    def media(self, batch: dict[str, Any], outputs: Any, max_items: int) -> dict[str, Any]:
        """A table per validation batch: masked input, the input with the predictions filled in,
        the original, and (original -> predicted) at every selected position."""
        labels = batch["labels"].cpu()
        selected = labels != -100
        filled = batch["input_ids"].cpu().clone()
        filled[selected] = outputs["predicted"].cpu()
        original = torch.where(selected, labels, batch["input_ids"].cpu())
        tokenizer = self.backbone.tokenizer
        rows = []
        for i in range(min(max_items, labels.shape[0])):
            where = selected[i].nonzero().flatten().tolist()
            pairs = ", ".join(
                f"{tokenizer.convert_ids_to_tokens(int(original[i, p]))}->{tokenizer.convert_ids_to_tokens(int(filled[i, p]))}"
                for p in where
            )
            rows.append([self._tokens(batch["input_ids"][i].tolist()), self._tokens(filled[i].tolist()),
                         self._tokens(original[i].tolist()), pairs])
        return {"val/masked_examples": wandb_table(["masked input", "prediction", "original", "original->predicted"], rows)}

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """Fill-mask: for each input, the top-k tokens at every mask token it contains.

        One record per input, in input order: {"text", "masks": [{"position", "tokens", "scores"}],
        "filled": the text with each mask replaced by its best token}.
        """
        hidden = encode(self.backbone, batch).hidden_states
        is_mask = batch["input_ids"] == self.mask_token_id
        logits = self.mlm_head(hidden[is_mask], self.backbone.input_embeddings().weight).float()
        scores, ids = logits.softmax(-1).topk(min(self.predict_top_k, logits.shape[-1]), dim=-1)
        tokenizer = self.backbone.tokenizer
        rows, k = [], 0
        texts = batch.get("texts") or batch.get("text") or [None] * len(batch["input_ids"])
        for i, text in enumerate(texts):
            positions = is_mask[i].nonzero().flatten().tolist()
            filled = batch["input_ids"][i].clone()
            masks = []
            for position in positions:
                masks.append({"position": position, "tokens": tokenizer.convert_ids_to_tokens(ids[k].tolist()),
                              "scores": [round(s, 6) for s in scores[k].tolist()]})
                filled[position] = ids[k, 0]
                k += 1
            attended = filled[batch["attention_mask"][i].bool()].tolist()
            rows.append({"text": text, "masks": masks,
                         "filled": tokenizer.decode(attended, skip_special_tokens=True)})
        return rows

    def visualize(self, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
        """A PNG per input (its text above the top-k tokens at each mask) and index.html of them all."""
        from headstart.viz.text_pages import fills_page

        return fills_page(records, out_dir)

    # ---- export ---------------------------------------------------------------------------------
    def hf_export(self, validate_only: bool = False) -> HFExport | None:
        """BERT: ``BertForPreTraining``; DistilBERT: ``DistilBertForMaskedLM`` (what ``<run>/pretrained``
        holds, see :func:`pretraining_model`); the fill-mask pipeline reads either."""
        family = self.backbone.model_config.model_type
        if family not in ("bert", "distilbert"):
            raise ExportError(f"task=masked_lm: no transformers pretraining class is mapped for {family}; "
                              "<run>/pretrained holds its encoder alone")
        if validate_only:
            return None
        model = pretraining_model(self.backbone.require_model(), self.mlm_head, self.nsp_head)
        return HFExport(model.eval(), [self.backbone.tokenizer], "fill-mask")

    def export_pretrained(self, directory: Path) -> None:
        """The encoder and tokenizer via ``save_pretrained``; for BERT as ``BertForPreTraining``
        (encoder under ``bert.``, heads under ``cls.``), for DistilBERT as ``DistilBertForMaskedLM``,
        so the directory is a hub-style pretraining checkpoint and ``AutoModel`` loads its encoder."""
        model = pretraining_model(self.backbone.model, self.mlm_head, self.nsp_head)
        if model is None:  # another encoder family: the encoder alone
            self.backbone.save_pretrained(str(directory))
            return
        model.save_pretrained(str(directory))
        self.backbone.tokenizer.save_pretrained(str(directory))


@torch.no_grad()
def pretraining_model(encoder: nn.Module, mlm_head: nn.Module, nsp_head: nn.Module | None) -> nn.Module | None:
    """The family's transformers pretraining class holding this encoder and these heads (on CPU), or
    None for a family without a mapping. BERT: ``BertForPreTraining`` (``cls.seq_relationship`` keeps
    its fresh init when NSP was off); DistilBERT: ``DistilBertForMaskedLM``."""
    model_type = encoder.config.model_type
    if model_type == "bert":
        from transformers import BertForPreTraining

        model = BertForPreTraining(encoder.config)
        model.bert.load_state_dict(encoder.state_dict())
        head = model.cls.predictions
        head.transform.dense.load_state_dict(mlm_head.dense.state_dict())
        head.transform.LayerNorm.load_state_dict(mlm_head.layer_norm.state_dict())
        head.bias.copy_(mlm_head.bias)
        head.decoder.bias = head.bias  # tied in BertForPreTraining (_tied_weights_keys)
        if nsp_head is not None and isinstance(nsp_head.pooler, nn.Identity):
            model.cls.seq_relationship.load_state_dict(nsp_head.seq_relationship.state_dict())
    elif model_type == "distilbert":
        from transformers import DistilBertForMaskedLM

        model = DistilBertForMaskedLM(encoder.config)
        model.distilbert.load_state_dict(encoder.state_dict())
        model.vocab_transform.load_state_dict(mlm_head.dense.state_dict())
        model.vocab_layer_norm.load_state_dict(mlm_head.layer_norm.state_dict())
        model.vocab_projector.bias.copy_(mlm_head.bias)
    else:
        return None
    model.tie_weights()
    return model


# headstart MLM head key -> the pretraining class's (BERT: BertForPreTraining / BertForMaskedLM; DistilBERT)
MLM_HEAD_KEYS = {
    "bert": {"dense.weight": "cls.predictions.transform.dense.weight", "dense.bias": "cls.predictions.transform.dense.bias",
             "layer_norm.weight": "cls.predictions.transform.LayerNorm.weight",
             "layer_norm.bias": "cls.predictions.transform.LayerNorm.bias", "bias": "cls.predictions.bias"},
    "distilbert": {"dense.weight": "vocab_transform.weight", "dense.bias": "vocab_transform.bias",
                   "layer_norm.weight": "vocab_layer_norm.weight", "layer_norm.bias": "vocab_layer_norm.bias",
                   "bias": "vocab_projector.bias"},
}


def keep_mlm_head(backbone: nn.Module, mlm_head: nn.Module, nsp_head: nn.Module | None) -> str | None:
    """Continued pretraining from a pretraining checkpoint: its MLM head (and BERT's NSP layer when
    NSP is on and reads the encoder's pooler) instead of fresh ones, in one line."""
    names = MLM_HEAD_KEYS.get(backbone.model_config.model_type)
    if names is None:
        return None
    line = keep_checkpoint_head("masked_lm", backbone, mlm_head, ("ForPreTraining", "ForMaskedLM"), names, None)
    if line and ": kept" in line and nsp_head is not None and isinstance(nsp_head.pooler, nn.Identity):
        found = backbone.checkpoint_head
        if "cls.seq_relationship.weight" in found.state:
            nsp_head.seq_relationship.load_state_dict({"weight": found.state["cls.seq_relationship.weight"],
                                                       "bias": found.state["cls.seq_relationship.bias"]})
            line += " and NSP layer"
    return line
