"""Loading and exporting the wav2vec2 backbone (backbones/wav2vec2.py holds the model).

- :func:`build_preset`: a named random-init architecture (torchaudio builder kwargs);
- :func:`load_bundle`: a torchaudio pipeline bundle (``WAV2VEC2_BASE``, ``HUBERT_LARGE``, ...);
- :func:`load_hf`: a Hugging Face checkpoint, converted with torchaudio's importer;
- :func:`hf_config` / :func:`copy_into_hf` / :func:`save_pretrained`: the inverse, a
  transformers directory (``Wav2Vec2Model`` or ``Wav2Vec2ForPreTraining``) from a backbone;
- :func:`pretraining_head_state`: a pretraining checkpoint's quantizer and projections.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchaudio.models import Wav2Vec2Model, wav2vec2_model, wavlm_model

from headstart.backbones.base import CheckpointHead, load_or_explain, load_task_model, task_architecture
from headstart.backbones.from_scratch import random_init_config

BUNDLE_PREFIXES = ("WAV2VEC2_", "HUBERT_", "WAVLM_")


def build_preset(name: str, presets: dict[str, dict[str, Any]]) -> tuple[Wav2Vec2Model, dict[str, Any]]:
    """-> (model, its builder kwargs). ``model_type: wavlm`` in a preset selects ``wavlm_model``."""
    if name not in presets:
        raise ValueError(f"unknown wav2vec2 preset {name!r}; choose one of {sorted(presets)}")
    params = dict(presets[name])  # a Hydra DictConfig becomes plain kwargs
    layers = params.get("extractor_conv_layer_config")
    if layers is not None:
        params["extractor_conv_layer_config"] = [tuple(layer) for layer in layers]
    params["aux_num_out"] = None
    model_type = params.pop("model_type", "wav2vec2")
    builder = wavlm_model if model_type == "wavlm" else wav2vec2_model
    return builder(**params), {**params, "model_type": model_type}


def load_bundle(name: str, pretrained: bool) -> tuple[Wav2Vec2Model, dict[str, int] | None, dict[str, Any]]:
    """torchaudio pipeline bundle -> (model, vocab of ASR bundles with blank renamed <pad>, arch)."""
    import torchaudio.pipelines as pipelines
    from torchaudio.pipelines._wav2vec2.utils import _get_model

    bundle = getattr(pipelines, name, None)
    if bundle is None or not hasattr(bundle, "get_model"):
        known = [n for n in dir(pipelines) if n.startswith(BUNDLE_PREFIXES)]
        raise ValueError(f"unknown torchaudio bundle {name!r}; choose one of {known}")
    if pretrained:
        model = load_or_explain(lambda: _download_bundle(bundle), name)
        model = getattr(model, "model", model)  # drop the input layer-norm wrapper: inputs come normalised
    else:
        model = _get_model(bundle._model_type, bundle._params)
    vocab = None
    if hasattr(bundle, "get_labels"):
        labels = ["<pad>", *bundle.get_labels()[1:]]  # torchaudio's blank "-" is HF's "<pad>"
        vocab = {tok: i for i, tok in enumerate(labels)}
    arch = {**bundle._params, "model_type": "wavlm" if bundle._model_type == "WavLM" else "wav2vec2"}
    arch.pop("aux_num_out", None)
    return model, vocab, arch


def _download_bundle(bundle: Any) -> nn.Module:
    try:
        return bundle.get_model()
    except RuntimeError as err:  # torch.hub wraps some network failures in RuntimeError
        raise OSError(str(err)) from err


def load_hf(
    checkpoint: str, pretrained: bool, overrides: dict[str, Any] | None = None
) -> tuple[Wav2Vec2Model, torch.Tensor | None, dict[str, int] | None, dict[str, Any], CheckpointHead | None]:
    """HF checkpoint -> (torchaudio model with aux for CTC checkpoints, masked_spec_embed, vocab, arch,
    the head of a ``Wav2Vec2ForSequenceClassification`` checkpoint as one linear layer or None).

    overrides: Wav2Vec2Config keys to change. With ``pretrained=False`` and the checkpoint's config
    out of reach, the default ``Wav2Vec2Config`` (wav2vec2-base) is used (``backbones.from_scratch``).
    """
    import transformers
    from torchaudio.models.wav2vec2.utils import import_huggingface_model
    from torchaudio.models.wav2vec2.utils.import_huggingface import _get_config, _get_config_wavlm

    overrides = dict(overrides or {})
    if pretrained:
        config = load_or_explain(lambda: transformers.AutoConfig.from_pretrained(checkpoint), checkpoint)
        for key, value in overrides.items():
            setattr(config, key, value)
    else:
        config, _ = random_init_config(checkpoint, {"default": {"model_type": "wav2vec2"}}, overrides)
    classes = {
        "wav2vec2": (transformers.Wav2Vec2Model, transformers.Wav2Vec2ForCTC),
        "wavlm": (transformers.WavLMModel, transformers.WavLMForCTC),
    }
    if config.model_type not in classes:
        raise ValueError(
            f"checkpoint '{checkpoint}' is a {config.model_type!r} model; the wav2vec2 backbone imports "
            f"{sorted(classes)} (HuBERT: use a torchaudio bundle such as HUBERT_BASE)"
        )
    is_ctc = any(arch.endswith("ForCTC") for arch in config.architectures or [])
    cls = classes[config.model_type][int(is_ctc)]
    classifier = task_architecture(config, ("ForSequenceClassification",)) if pretrained and not is_ctc else None
    head: CheckpointHead | None = None
    if classifier:  # a fine-tuned audio classifier: its head is offered to the task, as one linear layer
        hf_model, head = load_task_model(checkpoint, classifier)
        head = classifier_as_one_layer(head, config)
    elif pretrained:
        hf_model = load_or_explain(lambda: cls.from_pretrained(checkpoint), checkpoint)
    else:
        hf_model = cls(config)
    base = hf_model.base_model if is_ctc else hf_model
    masked_embed = getattr(base, "masked_spec_embed", None)
    model = import_huggingface_model(hf_model.eval())
    vocab = _read_hf_vocab(checkpoint) if is_ctc else None
    wavlm = config.model_type == "wavlm"
    arch = {**(_get_config_wavlm if wavlm else _get_config)(config), "model_type": config.model_type}
    return model, (masked_embed.data if masked_embed is not None else None), vocab, arch, head


def classifier_as_one_layer(head: CheckpointHead, config: Any) -> CheckpointHead | None:
    """``Wav2Vec2ForSequenceClassification``'s head (per-frame ``projector``, masked mean, then
    ``classifier``) as the one linear layer after the masked mean that headstart's head is: the mean
    is linear, so classifier(mean(projector(h))) = (Wc Wp) mean(h) + Wc bp + bc exactly. None when
    the class mixes hidden layers (``use_weighted_layer_sum``), which headstart's head does not."""
    if getattr(config, "use_weighted_layer_sum", False):
        return None
    state = head.state
    weight_p, bias_p = state["projector.weight"].double(), state["projector.bias"].double()
    weight_c, bias_c = state["classifier.weight"].double(), state["classifier.bias"].double()
    one = {"classifier.weight": (weight_c @ weight_p).float(), "classifier.bias": (weight_c @ bias_p + bias_c).float()}
    return CheckpointHead(head.architecture, head.labels, one)


def _read_hf_vocab(checkpoint: str) -> dict[str, int] | None:
    """The processor's flat vocab.json from a local dir or the local hub cache, if there."""
    path: Any = Path(checkpoint) / "vocab.json"
    if not path.is_file():
        from huggingface_hub import try_to_load_from_cache

        try:
            path = try_to_load_from_cache(checkpoint, "vocab.json")
        except ValueError:  # not a valid repo id (e.g. a local path without vocab.json)
            return None
        if not isinstance(path, str):
            return None
    mapping = json.loads(Path(path).read_text(encoding="utf-8"))
    return mapping if all(isinstance(v, int) for v in mapping.values()) else None


def hf_config(backbone: Any, **extra: Any) -> Any:
    """The transformers ``Wav2Vec2Config`` of this architecture (the inverse of torchaudio's import);
    ``extra`` adds or overrides config keys (e.g. the quantizer sizes)."""
    import transformers

    arch = backbone.arch
    if arch.get("model_type", "wav2vec2") != "wav2vec2":
        raise ValueError(f"exporting a {arch.get('model_type')!r} backbone to Hugging Face is not supported (wav2vec2 only)")
    layers = [tuple(layer) for layer in arch["extractor_conv_layer_config"]]
    norm = str(arch.get("extractor_mode", "group_norm")).removesuffix("_norm")
    kwargs = dict(
        feat_extract_norm=norm, conv_dim=[c for c, _, _ in layers], conv_kernel=[k for _, k, _ in layers],
        conv_stride=[s for _, _, s in layers], conv_bias=bool(arch["extractor_conv_bias"]),
        hidden_size=arch["encoder_embed_dim"], feat_proj_dropout=arch["encoder_projection_dropout"],
        num_conv_pos_embeddings=arch["encoder_pos_conv_kernel"],
        num_conv_pos_embedding_groups=arch["encoder_pos_conv_groups"], num_hidden_layers=arch["encoder_num_layers"],
        num_attention_heads=arch["encoder_num_heads"], attention_dropout=arch["encoder_attention_dropout"],
        intermediate_size=arch["encoder_ff_interm_features"], activation_dropout=arch["encoder_ff_interm_dropout"],
        hidden_dropout=arch["encoder_dropout"], do_stable_layer_norm=bool(arch["encoder_layer_norm_first"]),
        layerdrop=arch["encoder_layer_drop"], mask_time_prob=backbone.mask_time_prob,
        mask_time_length=backbone.mask_time_length, mask_feature_prob=backbone.mask_feature_prob,
        mask_feature_length=backbone.mask_feature_length,
    )  # fmt: skip
    return transformers.Wav2Vec2Config(**{**kwargs, **extra})


def copy_into_hf(backbone: Any, hf_base: nn.Module) -> None:
    """Load this backbone's weights into a transformers ``Wav2Vec2Model`` (strict: every name maps)."""
    hf_base.feature_extractor.load_state_dict(backbone.model.feature_extractor.state_dict())
    hf_base.feature_projection.load_state_dict(backbone.model.encoder.feature_projection.state_dict())
    hf_base.encoder.load_state_dict(backbone.model.encoder.transformer.state_dict())
    if backbone.masked_spec_embed is not None and getattr(hf_base, "masked_spec_embed", None) is not None:
        hf_base.masked_spec_embed.data.copy_(backbone.masked_spec_embed.data)


def save_pretrained(backbone: Any, directory: str | Path, pretraining_head: dict[str, Any] | None = None) -> None:
    """Write a Hugging Face directory (config.json, model.safetensors, preprocessor_config.json).

    pretraining_head: ``{"config": {num_codevector_groups, num_codevectors_per_group, codevector_dim,
    proj_codevector_dim, ...}, "state_dict": {quantizer.*, project_q.*, project_hid.*}}`` writes the
    ``Wav2Vec2ForPreTraining`` layout (the backbone under ``wav2vec2.``); without it, ``Wav2Vec2Model``.
    Either loads back with ``model.checkpoint=<directory>`` (headstart) or ``from_pretrained`` (transformers).
    """
    hf, extractor = pretraining_model(backbone, pretraining_head)
    hf.save_pretrained(str(directory))
    extractor.save_pretrained(str(directory))


def pretraining_model(backbone: Any, pretraining_head: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """(transformers model, feature extractor) of :func:`save_pretrained`: ``Wav2Vec2ForPreTraining``
    with the head, ``Wav2Vec2Model`` without."""
    import transformers

    extra = dict(pretraining_head["config"]) if pretraining_head else {}
    config = hf_config(backbone, **extra)
    if backbone.masked_spec_embed is not None and config.mask_time_prob <= 0:
        config.mask_time_prob = 1e-9  # keep the learned mask embedding (HF creates it only when > 0)
    if pretraining_head:
        hf = transformers.Wav2Vec2ForPreTraining(config)
        copy_into_hf(backbone, hf.wav2vec2)
        missing, unexpected = hf.load_state_dict(dict(pretraining_head["state_dict"]), strict=False)
        if unexpected or any(not k.startswith("wav2vec2.") for k in missing):
            raise ValueError(f"pretraining head does not fit Wav2Vec2ForPreTraining: missing {missing}, unexpected {unexpected}")
    else:
        hf = transformers.Wav2Vec2Model(config)
        copy_into_hf(backbone, hf)
    return hf, feature_extractor(backbone, config)


def feature_extractor(backbone: Any, config: Any) -> Any:
    """The ``Wav2Vec2FeatureExtractor`` of this backbone's input: raw 1-channel audio at its sample
    rate, normalised per clip; an attention mask where the conv stack normalises per frame."""
    import transformers

    return transformers.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=backbone.sample_rate, padding_value=0.0, do_normalize=True,
        return_attention_mask=config.feat_extract_norm == "layer",
    )  # fmt: skip


def pretraining_head_state(backbone: Any) -> dict[str, Any] | None:
    """A ``Wav2Vec2ForPreTraining`` checkpoint's quantizer / project_q / project_hid (continued
    pretraining), read from the checkpoint this backbone was loaded from; None otherwise."""
    source = getattr(backbone, "checkpoint_source", None)
    if source is None:
        return None
    import transformers

    config = transformers.AutoConfig.from_pretrained(source)
    if "Wav2Vec2ForPreTraining" not in (config.architectures or []):
        return None
    full = transformers.Wav2Vec2ForPreTraining.from_pretrained(source)
    state = {k: v for k, v in full.state_dict().items() if not k.startswith("wav2vec2.")}
    keys = ("num_codevector_groups", "num_codevectors_per_group", "codevector_dim", "proj_codevector_dim")
    return {"config": {k: getattr(config, k) for k in keys}, "state_dict": state}
