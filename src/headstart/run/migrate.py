"""Bring a checkpoint written before the composition was stored (meta format 1) to format 2.

Such a checkpoint holds its group choices (task / model / data) and the resolved config, but not
the overrides that composed it. The migration recomposes the choices with the installed
``conf/`` and turns every plain value where the stored config differs into an override
(``data.batch_size=16``), checked like any override read from a checkpoint. It never
instantiates the stored config; a stored config naming a Hydra key (``_target_``...) that the
installed conf does not compose is a conflict, and nothing is written. What describes the
training machine (trainer, paths, loggers, callbacks) is dropped from the record: eval and
predict take those from their own command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from headstart.run.checkpoint import (
    _MISSING,
    CHOICE_KEYS,
    MIGRATE,
    NOT_COMPARED,
    compare_record,
    differences,
    holds_reserved,
    record_view,
)
from headstart.run.composition import checked_overrides, recompose
from headstart.run.errors import ConfigError
from headstart.run.meta import FORMAT, OPTION_NAME, check_meta, reserved_key

_KEY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass
class Migration:
    overrides: list[str] = field(default_factory=list)
    not_carried: list[str] = field(default_factory=list)  # stored keys the installed conf lacks (+key)
    conflicts: list[str] = field(default_factory=list)  # stored Hydra keys the installed conf does not compose
    meta: dict[str, Any] | None = None


def literal(value: Any) -> str:
    """``value`` in Hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value).__name__)


def migrate(meta: dict[str, Any], path: str) -> Migration:
    """What a format-1 meta becomes; ``meta`` of the result is None when it cannot be migrated."""
    check_meta(meta, path)
    found = Migration()
    if meta.get("format") == FORMAT:
        raise ConfigError(f"{path}: already meta format {FORMAT}; nothing to migrate")
    choices = meta.get("choices") or {}
    base = [f"{k}={choices[k]}" for k in CHOICE_KEYS if isinstance(choices.get(k), str) and OPTION_NAME.match(choices[k])]
    record = {k: v for k, v in (meta.get("config") or {}).items() if k not in NOT_COMPARED}
    composed = record_view(recompose(checked_overrides(base, path), path), record)
    for where, stored, now in differences(record, {k: v for k, v in composed.items() if k not in NOT_COMPARED}):
        if stored is _MISSING:
            continue  # a key the installed conf added: its default applies
        if reserved_key(where.rsplit(".", 1)[-1]) or holds_reserved(stored):
            found.conflicts.append(f"{where}={str(stored)[:80]!r}")
        elif now is _MISSING or not _KEY.match(where):
            found.not_carried.append(where)
        else:
            found.overrides.append(f"{where}={literal(stored)}")
    if found.conflicts:
        return found
    overrides = checked_overrides([*base, *found.overrides], path)
    compare_record(record, recompose(overrides, path), path, len(overrides))  # refuses what would not load
    found.meta = {**meta, "format": FORMAT, "compose": {"config_name": "train", "overrides": overrides}, "config": record,
                  "model_rebuild": with_resolved_rules(meta.get("model_rebuild") or {}, record.get("model") or {})}
    return found


# Backbone arguments whose default became "auto" (it follows what is loaded); a rebuild is random
# init, so an old checkpoint's rebuild data takes the values its run had, from the record.
AUTO_RULES = ("freeze_feature_encoder", "mask_time_prob")


def with_resolved_rules(rebuild: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    if "presets" not in rebuild:  # only wav2vec2's rebuild data has them
        return dict(rebuild)
    resolved = {k: model[k] for k in AUTO_RULES if k not in rebuild and isinstance(model.get(k), (bool, int, float))}
    return {**rebuild, **resolved}


__all__ = ["MIGRATE", "Migration", "literal", "migrate"]
