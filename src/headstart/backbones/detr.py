"""DETR (transformers' ``DetrModel``) as a backbone: every decoder layer's query states.

The class and box heads live in headstart (``heads.detection.DetectionHead``), shared across
decoder layers. ``auxiliary_loss=True`` in the HF config is what makes transformers return the
per-layer states (``intermediate_hidden_states``, each after the decoder's final layer norm, as
DETR's auxiliary losses use them); the backbone always turns it on.

When the checkpoint is a ``DetrForObjectDetection`` (``facebook/detr-resnet-50``), its class
and box head weights are kept aside and offered to the task as DetectionHead keys
(:meth:`DetrBackbone.head_weights`): the box MLP always (it is class-agnostic), the class
layer when the data's classes are the checkpoint's (by name, e.g. COCO's 80 among DETR's 91
ids, or by count).

The CNN (a transformers ResNet, or timm's when the checkpoint says so) can be frozen, or
trained at its own learning rate (``cnn_lr``, DETR's 1e-5 against 1e-4 for the rest) through
:meth:`DetrBackbone.lr_groups`.

A model built without weights (presets, ``pretrained=false``) gets DETR's own initialisation
(:func:`detr_init`), not transformers' N(0, 0.02), which barely trains small widths from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoImageProcessor, DetrForObjectDetection, DetrModel

from headstart.backbones.base import HubUnreachableError, load_or_explain
from headstart.backbones.contract import DataSpec
from headstart.backbones.hf_vision import IMAGENET_MEAN, IMAGENET_STD, build_hf_config

# DetectionHead key <- DetrForObjectDetection key
HEAD_KEYS = {
    "class_head.weight": "class_labels_classifier.weight",
    "class_head.bias": "class_labels_classifier.bias",
    "box_mlp.0.weight": "bbox_predictor.layers.0.weight",
    "box_mlp.0.bias": "bbox_predictor.layers.0.bias",
    "box_mlp.2.weight": "bbox_predictor.layers.1.weight",
    "box_mlp.2.bias": "bbox_predictor.layers.1.bias",
    "box_mlp.4.weight": "bbox_predictor.layers.2.weight",
    "box_mlp.4.bias": "bbox_predictor.layers.2.bias",
}


@dataclass
class QueryOutput:
    """query_states: [L, B, Q, D] every decoder layer's query states (index -1 = last layer)."""

    query_states: torch.Tensor


# model.pretrained=false without the hub: DetrConfig() defaults to a timm ResNet-50; this is the
# same network from transformers' own ResNet (as the no_timm branch of facebook/detr-resnet-50).
SCRATCH_DEFAULTS: dict[str, Any] = {
    "use_timm_backbone": False,
    "use_pretrained_backbone": False,
    "backbone_config": {"model_type": "resnet", "out_features": ["stage4"]},
}


class DetrBackbone(nn.Module):
    """forward(pixel_values [B, 3, H, W], pixel_mask [B, H, W] 1 = real pixel) -> QueryOutput.

    checkpoint: hub id or local directory of a DETR-family checkpoint (``DetrModel`` or
        ``DetrForObjectDetection``); revision: its branch (``no_timm`` holds
        facebook/detr-resnet-50 with a transformers ResNet, so timm is not needed).
    preset / presets: a named small config (random init, offline; ResNetConfig backbone,
        ``use_timm_backbone: false``, ``use_pretrained_backbone: false``).
    num_queries: override the checkpoint's query count (new query embeddings are random).
    freeze_cnn: freeze the whole CNN. freeze_cnn_stages: otherwise, freeze the CNN's stem and
        its first N stages (DETR: 1; 0 trains all of it, for random-init presets).
    cnn_lr: learning rate of the CNN (None: the backbone's).
    image_size / max_size: shortest / longest image side the data resizes to (None: the
        checkpoint processor's, 800 / 1333).
    """

    def __init__(
        self,
        checkpoint: str = "facebook/detr-resnet-50",
        revision: str | None = None,
        preset: str | None = None,
        presets: dict[str, dict] | None = None,
        pretrained: bool = True,
        config: dict[str, Any] | None = None,
        num_queries: int | None = None,
        freeze_cnn: bool = False,
        freeze_cnn_stages: int = 1,
        cnn_lr: float | None = None,
        image_size: int | None = None,
        max_size: int | None = None,
        image_mean: tuple[float, ...] | None = None,
        image_std: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        self.checkpoint, self.revision = checkpoint, revision
        overrides = {**dict(config or {}), "auxiliary_loss": True}
        if num_queries is not None:
            overrides["num_queries"] = int(num_queries)
        if preset is None and "model_type" not in overrides:
            try:
                _check_timm(checkpoint, revision)
            except HubUnreachableError:
                if pretrained:
                    raise
        hf_config, load_weights = build_hf_config(
            checkpoint, preset, dict(presets or {}), overrides, pretrained, SCRATCH_DEFAULTS,
            **({"revision": revision} if revision else {}),
        )
        load_weights = load_weights and pretrained
        self._head_weights: dict[str, torch.Tensor] | None = None
        self._head_labels: list[str] = []
        if load_weights:
            self.model = self._load(hf_config)
        else:
            self.model = DetrModel(hf_config)
            detr_init(self.model)
        self.hidden_size = int(self.model.config.d_model)
        self.num_queries = int(self.model.config.num_queries)
        self.cnn_lr = cnn_lr
        self._freeze_cnn(freeze_cnn, freeze_cnn_stages)
        # a preset may carry its input sizes in the HF config (image_size / max_size)
        image_size = image_size or getattr(self.model.config, "image_size", None)
        max_size = max_size or getattr(self.model.config, "max_size", None)
        self._spec = _image_spec(checkpoint if load_weights else None, revision, image_size, max_size, image_mean, image_std)

    def _load(self, hf_config: Any) -> DetrModel:
        """The checkpoint's DetrModel; a detection checkpoint's head weights are kept aside."""
        kwargs = {"config": hf_config, "revision": self.revision} if self.revision else {"config": hf_config}
        if "DetrForObjectDetection" not in (getattr(hf_config, "architectures", None) or []):
            return load_or_explain(lambda: DetrModel.from_pretrained(self.checkpoint, **kwargs), self.checkpoint)
        # num_queries or other overrides may not fit the saved weights: those are re-initialised
        full = load_or_explain(
            lambda: DetrForObjectDetection.from_pretrained(self.checkpoint, ignore_mismatched_sizes=True, **kwargs),
            self.checkpoint,
        )
        state = full.state_dict()
        self._head_weights = {ours: state[theirs].detach().clone() for ours, theirs in HEAD_KEYS.items()}
        id2label = full.config.id2label
        self._head_labels = [str(id2label.get(i, id2label.get(str(i), ""))) for i in range(full.config.num_labels)]
        return full.model

    def _freeze_cnn(self, freeze_all: bool, stages: int) -> None:
        """DETR trains the CNN but its stem and first stage. transformers 5.24 means to do the same
        for ResNet backbones but matches ``stage.N`` against ``stages.N`` names and so freezes all
        of it: the rule is re-applied here on the module's own stage names."""
        cnn = self.cnn
        for name, param in cnn.named_parameters():
            stage = _stage_index(name)
            param.requires_grad_(not freeze_all and (stages <= 0 or (stage is not None and stage >= stages)))

    @property
    def cnn(self) -> nn.Module:
        """The convolutional backbone (transformers ResNet or timm model)."""
        return self.model.backbone.model

    def lr_groups(self, backbone_lr: float) -> dict[str, tuple[nn.Module, float]]:
        """Modules with their own learning rate, to be grouped before the rest of the backbone."""
        return {"cnn": (self.cnn, self.cnn_lr if self.cnn_lr is not None else backbone_lr)}

    def head_weights(self, labels: list[str]) -> dict[str, torch.Tensor] | None:
        """DetectionHead weights from the checkpoint for classes ``labels`` (None: not a detection
        checkpoint). The class layer is included when every label is one of the checkpoint's
        classes (rows picked by name, no-object last) or the counts match; else only the box MLP."""
        if self._head_weights is None:
            return None
        weights = {k: v for k, v in self._head_weights.items() if k.startswith("box_mlp.")}
        lookup = {name.lower(): i for i, name in enumerate(self._head_labels)}
        rows: list[int] | None = None
        if labels and all(label.lower() in lookup for label in labels):
            rows = [lookup[label.lower()] for label in labels]
        elif len(labels) == len(self._head_labels):
            rows = list(range(len(labels)))
        if rows is not None:
            index = torch.tensor(rows + [len(self._head_labels)])  # + no-object
            weights["class_head.weight"] = self._head_weights["class_head.weight"][index]
            weights["class_head.bias"] = self._head_weights["class_head.bias"][index]
        return weights

    def data_spec(self) -> DataSpec:
        """image_size (shortest side), max_size (longest side), image_mean, image_std."""
        return dict(self._spec)

    def rebuild_kwargs(self) -> dict[str, Any]:
        """Constructor overrides that rebuild this architecture offline (weights come from a checkpoint)."""
        return {
            "preset": None,
            "pretrained": False,
            "num_queries": None,
            "config": self.model.config.to_dict(),
            **{key: list(value) if isinstance(value, tuple) else value for key, value in self._spec.items()},
        }

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> QueryOutput:
        """Query states [L, B, Q, D]: the decoder's per-layer states for the auxiliary losses, and
        for the last layer ``last_hidden_state``, which is what ``DetrForObjectDetection`` scores.
        (With ``auxiliary_loss`` transformers 5 norms each layer's output in place, so the last
        state is normed once more than ``intermediate_hidden_states[-1]``; taking it makes the
        model compute what transformers' does, and its export exact.)"""
        out = self.model(pixel_values=pixel_values, pixel_mask=pixel_mask, return_dict=True)
        states = out.intermediate_hidden_states
        return QueryOutput(query_states=torch.cat([states[:-1], out.last_hidden_state[None]], dim=0))


def detr_init(model: DetrModel) -> None:
    """DETR's own initialisation of a model trained from scratch (facebookresearch/detr):
    xavier-uniform transformer weights, N(0, 1) object queries, PyTorch's default input projection.

    transformers initialises every linear layer and the query embeddings from N(0, init_std = 0.02),
    a choice for fine-tuning pretrained weights. Trained from scratch at small widths (d_model 64:
    a 0.16 gain per layer) it leaves the object queries nearly identical and the projected image
    features about ten times smaller than the sine position embeddings, and DETR barely learns
    (tiny preset on synthetic shapes: val/map_50 0.10 after 8 epochs). The CNN keeps its own
    (Kaiming) initialisation. Weights loaded afterwards (a checkpoint) replace all of this.
    """
    with torch.no_grad():
        for module in (model.encoder, model.decoder):
            for param in module.parameters():
                if param.dim() > 1:
                    nn.init.xavier_uniform_(param)
        nn.init.normal_(model.query_position_embeddings.weight)
        model.input_projection.reset_parameters()


def _stage_index(name: str) -> int | None:
    """ResNet stage of a parameter name (0-based), None for the stem. transformers:
    ``embedder.*`` / ``encoder.stages.N.*``; timm: ``conv1`` / ``layerN+1.*``."""
    parts = name.split(".")
    if "stages" in parts:
        return int(parts[parts.index("stages") + 1])
    for part in parts:
        if part.startswith("layer") and part[5:].isdigit():
            return int(part[5:]) - 1
    return None


def _check_timm(checkpoint: str, revision: str | None) -> None:
    """A timm-backbone checkpoint without timm installed: one line naming the ways out."""
    try:
        import timm  # noqa: F401

        return
    except ImportError:
        pass
    from transformers import AutoConfig

    kwargs = {"revision": revision} if revision else {}
    hf_config = load_or_explain(lambda: AutoConfig.from_pretrained(checkpoint, **kwargs), checkpoint)
    backbone = getattr(hf_config, "backbone_config", None)
    if getattr(backbone, "model_type", None) == "timm_backbone":
        raise ImportError(
            f"checkpoint '{checkpoint}' uses a timm CNN and timm is not installed: install timm, or load a "
            f"branch with a transformers ResNet (model.revision=no_timm for facebook/detr-resnet-50 and -101)"
        )


def _image_spec(
    checkpoint: str | None,
    revision: str | None,
    image_size: int | None,
    max_size: int | None,
    image_mean: tuple[float, ...] | None,
    image_std: tuple[float, ...] | None,
) -> dict[str, Any]:
    """Sizes and mean/std from the checkpoint's image processor when there is one; DETR's otherwise."""
    mean, std, shortest, longest = IMAGENET_MEAN, IMAGENET_STD, 800, 1333
    if checkpoint is not None:
        try:
            kwargs = {"revision": revision} if revision else {}
            proc = AutoImageProcessor.from_pretrained(checkpoint, **kwargs)
            mean, std = tuple(proc.image_mean), tuple(proc.image_std)
            size = dict(getattr(proc, "size", None) or {})
            shortest = size.get("shortest_edge") or shortest
            longest = size.get("longest_edge") or longest
        except (OSError, ValueError):
            pass
    return {
        "image_size": int(image_size or shortest),
        "max_size": int(max_size or longest),
        "image_mean": tuple(float(m) for m in (image_mean or mean)),
        "image_std": tuple(float(s) for s in (image_std or std)),
    }
