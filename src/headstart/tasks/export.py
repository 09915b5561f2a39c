"""A trained task as the transformers model class that computes the same thing (issue 23).

Each task that exports implements ``hf_export() -> HFExport``: the transformers model with
headstart's weights in it (config with ``id2label`` / ``label2id`` and the task's settings), the
tokenizer / image processor / feature extractor / CTC processor the run used, and the
``pipeline()`` task name. ``headstart.export`` writes it with ``save_pretrained`` and a model
card. Only exact conversions are exported: a head whose computation the transformers class does
not have (another pooling, an extra layer) is refused with :class:`ExportError`, never
approximated; tests/test_export.py loads every export in a process without headstart and
compares outputs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from headstart.run.errors import ConfigError


class ExportError(ConfigError):
    """The task (or this configuration of it) has no exact transformers counterpart."""


@dataclass
class HFExport:
    """What ``save_pretrained`` writes: ``model`` and every processor in ``processors``.

    pipeline_tag: the ``transformers.pipeline`` / hub task name (``token-classification``...).
    """

    model: Any
    processors: list[Any] = field(default_factory=list)
    pipeline_tag: str | None = None


def label_settings(labels: list[str]) -> dict[str, Any]:
    """The config keys naming the head's outputs: ``id2label`` / ``label2id`` in the head's order."""
    return {"id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}


def label_config(config: Any, labels: list[str]) -> Any:
    """A copy of ``config`` with ``num_labels``, ``id2label`` and ``label2id`` from ``labels``."""
    config = copy.deepcopy(config)
    for key, value in label_settings(labels).items():
        setattr(config, key, value)
    return config


def require_layout(head: nn.Module, layout: dict[str, type], task: str, target: str) -> None:
    """The head's submodules are exactly ``layout`` (name -> module type): the parts of the
    transformers class's head, nothing more (tasks do not import heads; Hydra wires them)."""
    found = {name: type(module) for name, module in head.named_children()}
    if set(found) != set(layout) or any(not issubclass(found[name], kind) for name, kind in layout.items()):
        shown = ", ".join(f"{name}: {kind.__name__}" for name, kind in found.items())
        raise ExportError(
            f"task={task}: the head ({type(head).__name__}: {shown}) is not the head of {target} "
            f"({', '.join(layout)}), so this model cannot be exported exactly"
        )


def load_exact(model: nn.Module, state: dict[str, torch.Tensor], target: str, unused: tuple[str, ...] = (),
               from_config: tuple[str, ...] = ()) -> nn.Module:
    """Load ``state`` into ``model`` (strict: every weight of the transformers class is set).

    unused: prefixes of headstart weights the class has no place for and whose output the task
    never reads (e.g. BERT's pooler under a token-classification head); anything else left over is
    an error, as is a transformers weight nothing fills. from_config: prefixes of buffers the class
    computes from its config and never learns (Mask2Former's loss weights).
    """
    kept = {k: v for k, v in state.items() if not k.startswith(unused)} if unused else dict(state)
    missing, unexpected = model.load_state_dict(kept, strict=False)
    buffers = dict(model.named_buffers())
    missing = [k for k in missing if not (k.startswith(from_config) and k in buffers)] if from_config else missing
    if missing or unexpected:
        raise ExportError(f"headstart's weights do not fill {target} exactly: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


def with_prefix(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{key}": value for key, value in state.items()}


def encoder_task_model(auto_class: Any, encoder: nn.Module, head_state: dict[str, torch.Tensor],
                       labels: list[str] | None, target: str, **settings: Any) -> Any:
    """A transformers ``AutoModelFor*`` built from the encoder's config (plus ``labels`` and
    ``settings``), the encoder's weights under its ``base_model_prefix`` and the head's under their
    transformers names (``head_state``)."""
    config = label_config(encoder.config, labels) if labels is not None else copy.deepcopy(encoder.config)
    for key, value in settings.items():
        setattr(config, key, value)
    config.architectures = None
    model = auto_class.from_config(config)
    prefix = model.base_model_prefix
    state = {**with_prefix(prefix, encoder.state_dict()), **head_state}
    # BERT-like encoders carry a pooler that token / span heads never read (the *For* class has none)
    has_pooler = any(key.startswith(f"{prefix}.pooler.") for key in model.state_dict())
    return load_exact(model, state, target, () if has_pooler else (f"{prefix}.pooler.",))


def language_model(backbone: Any, task: str, settings: dict[str, Any], validate_only: bool = False) -> Any:
    """A copy of the backbone's transformers LM (GPT-2, BART, T5: it *is* the model headstart
    trains, tied head included) whose generation config is the task's ``settings``, so
    ``generate()`` and the pipelines decode as predict.py does."""
    from transformers import GenerationConfig

    if getattr(backbone, "source_encoder", None) is not None:
        raise ExportError(f"task={task}: model.source_encoder is a headstart layer in front of the encoder that "
                          "no transformers class has, so this model cannot be exported exactly")
    if validate_only:
        return None
    model = copy.deepcopy(backbone.require_model()).eval()
    # what headstart's generate() runs: the model's own generation config, updated by the settings
    generation = GenerationConfig.from_dict(model.generation_config.to_dict())
    generation.update(**{"pad_token_id": int(backbone.pad_id), **settings})
    generation.validate()
    model.generation_config = generation
    return model


def wav2vec2_model(backbone: Any, hf_class: Any, **settings: Any) -> tuple[Any, Any]:
    """``hf_class`` (``Wav2Vec2ForCTC``, ``Wav2Vec2ForSequenceClassification``) with the backbone's
    encoder copied in under ``wav2vec2.`` (the converter of ``backbones.wav2vec2_io``) and its
    feature extractor (16 kHz, zero mean / unit variance as headstart's data normalises)."""
    from headstart.backbones import wav2vec2_io

    config = wav2vec2_io.hf_config(backbone, **settings)
    model = hf_class(config)
    wav2vec2_io.copy_into_hf(backbone, model.wav2vec2)
    return model, wav2vec2_io.feature_extractor(backbone, config)


# ---- the other way: a transformers task model's head kept by the task (model.checkpoint=<dir>) ----


def label_rows(theirs: list[str] | None, ours: list[str]) -> list[int] | None:
    """For each of ``ours``, its row in ``theirs`` when both hold the same names (in any order;
    case-insensitively if not exactly); None when they are not the same set."""
    if theirs is None or len(theirs) != len(ours):
        return None
    for key in (str, str.lower):
        index = {key(name): row for row, name in enumerate(theirs)}
        if len(index) == len(theirs) and set(index) == {key(name) for name in ours}:
            return [index[key(name)] for name in ours]
    return None


def keep_checkpoint_head(task: str, backbone: Any, head: nn.Module, wants: str | tuple[str, ...], names: dict[str, str],
                         labels: list[str] | None, per_label: tuple[str, ...] = (), fits: str | None = None,
                         extra_rows: int = 0) -> str | None:
    """Load the head of the transformers task model the backbone came from into ``head`` when it is
    this task's kind (``wants``: the class-name suffix) and, for labelled heads, holds the data's
    labels (by name, any order: rows ``per_label`` are reordered); say in one line what was kept or
    re-initialised and why. names: headstart key -> transformers key. fits: why it cannot fit
    (e.g. another pooling), or None. extra_rows: rows after the labels' that stay last (a
    no-object class). Returns the line (None when the checkpoint had no task head)."""
    found = getattr(backbone, "checkpoint_head", None)
    if found is None:
        return None
    where = f"model.checkpoint={getattr(backbone, 'checkpoint', '?')}"
    if not found.architecture.endswith(wants):
        kinds = " or *".join((wants,) if isinstance(wants, str) else wants)
        return say(f"{where} is a {found.architecture}; task={task} takes a *{kinds} head, so the head starts fresh")
    if fits is not None:
        return say(f"{where}: its {found.architecture} head was not kept ({fits}); the head starts fresh")
    missing = [theirs for theirs in names.values() if theirs not in found.state]
    if missing:
        return say(f"{where}: its {found.architecture} head has no {missing[0]}; the head starts fresh")
    state = {ours: found.state[theirs] for ours, theirs in names.items()}
    note = "it has no labels"
    if labels is not None:
        rows = label_rows(found.labels, labels)
        if rows is None:
            shown = ", ".join(map(str, (found.labels or [])[:6]))
            return say(f"{where}: its {found.architecture} head was re-initialised: its labels ({shown}...) are not "
                        f"the data's ({', '.join(labels[:6])}...)")
        rows = rows + list(range(len(labels), len(labels) + extra_rows))
        state.update({key: state[key][rows] for key in per_label})
        note = "labels matched by name" + ("" if rows == list(range(len(rows))) else ", rows reordered to the data's")
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as error:
        return say(f"{where}: its {found.architecture} head does not fit this head ({str(error).splitlines()[-1].strip()[:160]}); "
                    "the head starts fresh")
    return say(f"{where}: kept its {found.architecture} head ({note})")


def whole_model_kept(backbone: Any) -> str | None:
    """For a task whose backbone is the whole transformers model (LMs: the output layer is part of
    it): the kept line when it came from a checkpoint, None for a preset or random init."""
    if getattr(backbone, "preset", None) is not None or getattr(backbone, "model", None) is None:
        return None
    if not getattr(backbone, "loaded_weights", True):
        return None
    return f"model.checkpoint={backbone.checkpoint}: kept the whole {type(backbone.model).__name__}, its LM head included"


def say(line: str) -> str:
    """Print ``line`` on global rank zero; return it."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:
        print(line)
    return line
