"""Random-init configs of the transformers families: ``model.preset`` and ``model.pretrained=false``.

:func:`preset_config`: a named small architecture from the model's ``presets``.

``model.pretrained=false``: a family's architecture with random weights, also without the hub.

With a reachable checkpoint (hub id in the cache or online, or a local directory) the
architecture is the checkpoint's, with ``model.config`` overrides. When only its config would
need the network, the family's default config class is used instead (``BertConfig()`` is
bert-base, ``T5Config()`` t5-small, ``BartConfig()`` bart-large...), with the family's
``defaults`` and the ``model.config`` overrides on top; one log line says so. The family comes
from ``model.config.model_type`` or from the ``model_type`` of the model's presets.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from headstart.backbones.base import HubUnreachableError, load_or_explain

log = logging.getLogger(__name__)


def plain(value: Any) -> Any:
    """Hydra hands over DictConfig/ListConfig; transformers configs want plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [plain(v) for v in value]
    return value


def preset_config(preset: str, presets: Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> PretrainedConfig:
    """The config of ``model.preset`` (a named small random-init architecture, offline) with
    ``model.config`` overrides; the one preset resolver of the transformers families."""
    presets = plain(presets or {})
    if preset not in presets:
        raise ValueError(f"model.preset={preset} is not defined; choose one of {sorted(presets)}")
    return AutoConfig.for_model(**{**presets[preset], **plain(dict(overrides))})


def family_model_type(presets: Mapping[str, Mapping[str, Any]] | None, overrides: Mapping[str, Any]) -> str | None:
    """The transformers ``model_type`` of this model family: from the overrides, else any preset."""
    if overrides.get("model_type"):
        return str(overrides["model_type"])
    for preset in (presets or {}).values():
        if isinstance(preset, Mapping) and preset.get("model_type"):
            return str(preset["model_type"])
    return None


def random_init_config(
    checkpoint: str,
    presets: Mapping[str, Mapping[str, Any]] | None,
    overrides: Mapping[str, Any],
    defaults: Mapping[str, Any] | None = None,
    **load_kwargs: Any,
) -> tuple[PretrainedConfig, bool]:
    """(config, from_checkpoint) for a random-init model of ``checkpoint``'s family.

    from_checkpoint: True when the checkpoint's own config was read (overrides set on it);
    False when the family's default config was built offline (``defaults`` then ``overrides``).
    """
    try:
        config = load_or_explain(lambda: AutoConfig.from_pretrained(checkpoint, **load_kwargs), checkpoint)
    except HubUnreachableError as err:
        model_type = family_model_type(presets, overrides)
        if model_type is None:
            raise HubUnreachableError(f"{err}; or set model.config.model_type to build a default config") from err
        config = AutoConfig.for_model(**{**dict(defaults or {}), **dict(overrides), "model_type": model_type})
        log.warning(
            "model.pretrained=false: config of '%s' unreachable; random-init default %s (%s) with model.config "
            "overrides %s", checkpoint, type(config).__name__, model_type, sorted(overrides),
        )
        return config, False
    for key, value in overrides.items():
        setattr(config, key, value)
    return config, True
