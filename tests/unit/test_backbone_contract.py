"""Every backbone class satisfies the contract in backbones/contract.py, built as a run builds it
(its model config with ``model.preset=tiny``), and ``rebuild_kwargs()`` writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate

from conftest import make_cfg
from headstart.backbones.contract import AudioBackbone, Backbone, DenseBackbone, TextBackbone
from headstart.run.build import MODEL_META_KEYS, without

MODELS = {  # model config -> (a task it serves, the family protocols it satisfies)
    "vit": ("image_classification", ()),
    "convnext": ("image_classification", ()),
    "detr": ("object_detection", ()),
    "mask2former": ("segmentation", ()),
    "segformer": ("segmentation", (DenseBackbone,)),
    "glpn": ("depth_estimation", (DenseBackbone,)),
    "bert": ("text_classification", (TextBackbone,)),
    "distilbert": ("token_classification", (TextBackbone,)),
    "gpt2": ("text_generation", (TextBackbone,)),
    "bart": ("summarization", (TextBackbone,)),
    "t5": ("translation", (TextBackbone,)),
    "wav2vec2": ("speech_recognition", (AudioBackbone,)),
}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_each_backbone_satisfies_its_protocol_and_rebuild_kwargs_writes_nothing(model: str, tmp_path: Path) -> None:
    task, families = MODELS[model]
    cfg = make_cfg(tmp_path, f"task={task}", f"model={model}", "model.preset=tiny")
    backbone = instantiate(without(cfg.model, MODEL_META_KEYS), _convert_="all")
    for protocol in (Backbone, *families):
        assert isinstance(backbone, protocol), f"{type(backbone).__name__} is not a {protocol.__name__}"
    spec = backbone.data_spec()
    assert isinstance(spec, dict)
    if TextBackbone in families:
        assert spec["tokenizer"] is None and spec["tokenizer_training"]["family"]  # a preset: the data trains one
        return  # the model itself is built once the tokenizer arrives (attach)
    before = sorted(p for p in tmp_path.rglob("*"))
    rebuild = backbone.rebuild_kwargs()
    assert rebuild["pretrained"] is False and sorted(p for p in tmp_path.rglob("*")) == before
