"""Checks that run before any work: does the chosen model serve the chosen task, are the values in
their ranges, is a resumed checkpoint of this task?"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from headstart.run.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


def models_serving(task: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """Names of the model configs whose ``tasks`` list contains ``task``."""
    names = []
    for path in sorted((conf_dir / "model").glob("*.yaml")):
        model = OmegaConf.load(path)
        if task in (model.get("tasks") or []):
            names.append(path.stem)
    return names


def check_pairing(cfg: DictConfig) -> None:
    """Fail early when ``model=`` does not serve ``task=``, naming the models that do."""
    task, model = cfg.task.name, cfg.model.name
    if task not in (cfg.model.get("tasks") or []):
        serving = models_serving(task)
        raise ConfigError(
            f"model={model} does not serve task={task}; models for {task}: {', '.join(serving) or 'none'}"
        )


# Files of a transformers directory whose ``auto_map`` points at Python modules in the directory.
REMOTE_CODE_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json",
                     "feature_extractor_config.json", "image_processor_config.json")


def remote_code_file(directory: str | Path) -> Path | None:
    """The first config file of a transformers directory that maps classes to its own code
    (a top-level ``auto_map``), or None."""
    for name in REMOTE_CODE_FILES:
        file = Path(directory) / name
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text(errors="replace"))
        except json.JSONDecodeError:
            continue  # not ours to judge here: transformers reports a broken config itself
        if isinstance(data, dict) and data.get("auto_map"):
            return file
    return None


def check_remote_code(model: DictConfig, rebuild: dict | None = None) -> None:
    """A local model directory (``model.checkpoint``, or a checkpoint's rebuild directories) whose
    config maps classes to its own code (``auto_map``) is refused unless ``model.trust_remote_code=true``.

    headstart builds the transformers class it wraps in any case (``from_pretrained`` is never
    given ``trust_remote_code``), so a trusted directory loads into that class and its Python
    files are still never run; the flag says the user has looked at the directory.
    """
    if model.get("trust_remote_code", False):
        return
    directories = [model.get("checkpoint"), *((rebuild or {}).get(k) for k in ("checkpoint", "tokenizer_dir"))]
    for directory in directories:
        if not isinstance(directory, str) or not Path(directory).is_dir():
            continue
        file = remote_code_file(directory)
        if file is not None:
            raise ConfigError(
                f"{file}: names its own code (auto_map); headstart does not load a model directory with custom "
                "code unless model.trust_remote_code=true (it then loads the weights into the transformers class "
                "headstart wraps and still runs none of the directory's Python)"
            )


# ---- value ranges ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    """``key`` must be a ``kind`` (int or float; a bool is neither) within [low, high] (``open``:
    strictly above ``low``); ``optional``: null is allowed (the key's documented "choose for me")."""

    key: str
    kind: type
    low: float | None = None
    high: float | None = None
    open: bool = False
    optional: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.kind is int else "a number"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"<= {self.high:g}")
        return " ".join([kind, " and ".join(bounds)] if bounds else [kind]) + (" (or null)" if self.optional else "")

    def accepts(self, value: object) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.kind is int and not isinstance(value, int)):
            return False
        if self.low is not None and (value <= self.low if self.open else value < self.low):
            return False
        return self.high is None or value <= self.high


# The keys every task's config shares whose value has a range; a key a config lacks is not checked.
RANGES = (
    Range("data.batch_size", int, 1),
    Range("data.eval_batch_size", int, 1, optional=True),
    Range("data.num_workers", int, 0, optional=True),
    Range("data.val_fraction", float, 0, 1),
    Range("optim.lr", float, 0, open=True),
    Range("optim.backbone_lr", float, 0, open=True, optional=True),
    Range("optim.weight_decay", float, 0),
    Range("optim.warmup_ratio", float, 0, 1),
    Range("optim.min_lr_ratio", float, 0, 1),
    Range("trainer.max_steps", int, -1),
    Range("trainer.max_epochs", int, -1, optional=True),
    Range("trainer.accumulate_grad_batches", int, 1),
    Range("trainer.log_every_n_steps", int, 1),
    Range("trainer.gradient_clip_val", float, 0, optional=True),
    Range("trainer.num_sanity_val_steps", int, -1),
    Range("callbacks.last_checkpoint.every_n_train_steps", int, 0, optional=True),
)
_MISSING = object()


def check_ranges(cfg: DictConfig, ranges: tuple[Range, ...] = RANGES) -> None:
    """One line for the first value out of its range or of the wrong type (``data.batch_size=0``,
    ``optim.lr=-1``, ``trainer.max_steps=abc``), before anything is built or compared."""
    for rule in ranges:
        value = OmegaConf.select(cfg, rule.key, default=_MISSING)
        if value is _MISSING or OmegaConf.is_config(value):
            continue
        if not rule.accepts(value):
            raise ConfigError(f"{rule.key}={value}: must be {rule.describe()}")


def check_resumed_task(meta: dict, asked: dict, ckpt_path: str) -> None:
    """A resumed checkpoint must be of the task and model asked for (``asked``: this run's group
    choices, as build.group_choices gives them): one line naming both, before Lightning's
    state-dict mismatch would."""
    stored_choices = meta.get("choices") or {}
    for group in ("task", "model"):
        stored, wanted = stored_choices.get(group), asked.get(group)
        if stored and wanted and stored != wanted:
            raise ConfigError(
                f"ckpt_path={ckpt_path}: this checkpoint is {group}={stored}; you asked for {group}={wanted} "
                f"(resume with {group}={stored}, or start a new run without ckpt_path)"
            )


def group_options(group: str, conf_dir: Path = CONF_DIR) -> tuple[list[str], set[str]] | None:
    """(the options of config group ``group`` to show: its YAML files, top level only, since
    ``task/segmentation/`` holds a task's internal parts; every config path Hydra accepts, e.g.
    ``experiment=synthetic/image_classification``), or None if ``group`` is not a group."""
    folder = conf_dir / group
    if "/" in group or "." in group or not folder.is_dir():
        return None
    valid = {path.relative_to(folder).with_suffix("").as_posix() for path in folder.rglob("*.yaml")}
    return sorted(path.stem for path in folder.glob("*.yaml")), valid


def check_group_choices(argv: list[str], conf_dir: Path = CONF_DIR) -> None:
    """``task=segmentaton``: one line with "did you mean segmentation" (difflib over the group's
    options) before Hydra prints its stock list; values with commas (sweeps) are each checked."""
    import difflib

    for word in argv:
        if "=" not in word or word.startswith(("-", "+", "~", "hydra.")):
            continue
        group, value = word.split("=", 1)
        found = group_options(group, conf_dir)
        if found is None or value in ("null", "") or any(c in value for c in "()[]{}$*"):  # sweep syntax: Hydra's
            continue
        options, valid = found
        for choice in value.split(","):
            if choice and choice not in valid:
                close = difflib.get_close_matches(choice, sorted(valid), n=1, cutoff=0.6)
                hint = f"did you mean {group}={close[0]}? " if close else ""
                raise ConfigError(f"{group}={choice} is not an option of {group}: {hint}the options are {', '.join(options)}")


def exit_on_bad_choice(argv: list[str]) -> None:
    """:func:`check_group_choices` for a command line: ``error: ...`` on one line and exit 1."""
    import sys

    try:
        check_group_choices(argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
