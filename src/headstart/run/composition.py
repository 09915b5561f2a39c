"""What composed a run's config, recorded by train and replayed by eval / predict.

A checkpoint stores the training command's overrides as strings (``compose.overrides``); eval.py
and predict.py compose ``conf/train.yaml`` of the *installed* project with them, so only code
that the installed ``conf/`` names can be instantiated. An override read from a checkpoint is
data from anywhere, so before it is replayed it must be a plain ``key=value`` (or ``~key``
deletion) that:

- changes an existing key of no package (``key@pkg``): ``+key`` (add) is refused, and ``++key``
  (set or add) is replayed as a plain change, which Hydra refuses for a key the conf lacks,
- touches no Hydra key (``_target_``, ``_partial_``, ``_args_``, ``_call_``, ``_recursive_``,
  ``_convert_``, any ``_name_``) at any depth of its key or of a dict value,
- has a plain value: a scalar, or lists / dicts of scalars; no sweep, no ``${...}``
  interpolation (a resolver is code: ``${hs_sqlite:...}`` creates folders),
- chooses a config group option (``task=...``) by a plain name (no ``..``).

``hydra.*`` overrides are not recorded: eval and predict have their own run directory.
"""

from __future__ import annotations

from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from hydra.errors import HydraException
from omegaconf import DictConfig

from headstart.run.checks import CONF_DIR
from headstart.run.errors import ConfigError
from headstart.run.meta import OPTION_NAME, check_plain, refuse, reserved_key

CONFIG_NAME = "train"
SKIPPED_ROOTS = ("hydra",)


def _root(override: str) -> str:
    key = override.lstrip("+~").split("=", 1)[0]
    return key.split("@", 1)[0].replace("/", ".").split(".", 1)[0]


def recorded_overrides() -> list[str]:
    """This run's command-line overrides (``hydra.*`` left out), for its checkpoint's meta."""
    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task if _root(str(o)) not in SKIPPED_ROOTS]


def checked_override(text: Any, path: str, where: str) -> str | None:
    """``text`` if it may be replayed from a checkpoint (module doc), None for one not replayed
    (``hydra.*``); anything else is a one-line refusal naming the checkpoint."""
    if not isinstance(text, str):
        raise refuse(path, f"{where} is not an override string")
    try:
        parsed = OverridesParser.create().parse_override(text)
    except HydraException as err:
        raise refuse(path, f"{where}={text[:120]!r} is not a Hydra override ({str(err).splitlines()[0][:80]})") from None
    if parsed.type is OverrideType.ADD:
        raise refuse(path, f"{where}={text[:120]!r} adds a key (+key); an override from a checkpoint may only change one")
    if parsed.package is not None:
        raise refuse(path, f"{where}={text[:120]!r} names a package (@...)")
    if parsed.is_sweep_override():
        raise refuse(path, f"{where}={text[:120]!r} is a sweep, not one value")
    key = parsed.key_or_group
    if any(reserved_key(part) for part in key.replace("/", ".").split(".")):
        raise refuse(path, f"{where}={text[:120]!r} touches a Hydra key")
    if key.split(".", 1)[0] in SKIPPED_ROOTS:
        return None
    if parsed.type is OverrideType.DEL and text.split("=", 1)[0] == text:
        return text  # ~key: deletes an existing key of the installed config
    value = parsed.value()
    check_plain(value, path, f"{where} ({key})")
    if _has_interpolation(value):
        raise refuse(path, f"{where}={text[:120]!r} holds an interpolation (${{...}}); resolvers are code")
    if "." not in key and isinstance(value, str) and not OPTION_NAME.match(value):
        raise refuse(path, f"{where}: {key}={value[:80]!r} is not a config name")
    return text[2:] if parsed.type is OverrideType.FORCE_ADD else text  # ++key=v: change only


def _has_interpolation(value: Any) -> bool:
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, dict):
        return any(_has_interpolation(k) or _has_interpolation(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_interpolation(v) for v in value)
    return False


def checked_overrides(overrides: list[str], path: str) -> list[str]:
    checked = (checked_override(text, path, f"compose.overrides[{i}]") for i, text in enumerate(overrides))
    return [text for text in checked if text is not None]


def recompose(overrides: list[str], path: str) -> DictConfig:
    """``conf/train.yaml`` of the installed project composed with ``overrides`` (already checked);
    inside a Hydra app (eval.py, predict.py) with its config search path, else with ``conf/``."""
    try:
        if GlobalHydra.instance().is_initialized():
            return compose(config_name=CONFIG_NAME, overrides=overrides)
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=CONFIG_NAME, overrides=overrides)
    except HydraException as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{path}: its training overrides do not compose with the installed conf/ ({first[:200]})") from None
