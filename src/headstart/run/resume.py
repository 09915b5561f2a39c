"""Resuming a run: which checkpoint ``ckpt_path=last`` means, and what a resumed run reuses.

A resumed run continues the killed one exactly (the data order, augmentations and RNG states
are handled by the loaders and the RNG callback); what is decided before building is here:

- ``ckpt_path=last``: the ``last.ckpt`` of this run's own directory when there is one (resume
  in place: ``hydra.run.dir=<killed run> ckpt_path=last``), else the newest ``last.ckpt``
  among this task's single runs, ``<paths.log_dir>/<task>/runs/*/checkpoints/last.ckpt``;
  "newest" by the step the checkpoint records, not by file time or name (a copied directory
  has new file times; an older headstart left ``last-v1.ckpt`` files); none is a one-line error. In a multirun job only the job's own
  folder counts, and without a ``last.ckpt`` there the job starts fresh (a requeued or re-run
  sweep resumes each job from its own checkpoint, and never from another run's).
- The tokenizer: a preset model's tokenizer is trained on the task's text, and training it
  again is not deterministic, so a resumed run loads the one the killed run saved.
- The W&B run: the checkpoint records its run id, and the resumed run logs into the same run
  (``id=``, ``resume="allow"``) instead of starting a second one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from headstart.run.checks import remote_code_file
from headstart.run.errors import ConfigError, in_multirun
from headstart.run.meta import check_meta
from headstart.run.safe_load import safe_load

LAST = "last"
WANDB_KEY = "wandb_run_id"  # in the checkpoint's headstart meta


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """``cfg.ckpt_path`` with ``last`` replaced by the checkpoint it means (see module doc)."""
    path = cfg.get("ckpt_path")
    if path != LAST:
        return None if path is None else str(path)
    own = Path(str(cfg.paths.output_dir)) / "checkpoints" / "last.ckpt"
    mine = newest_by_step(own.parent.glob("last*.ckpt"))
    if mine:
        return str(mine)
    if in_multirun():
        print(f"ckpt_path=last: no {own} yet, starting fresh")
        return None
    runs = Path(str(cfg.paths.log_dir)) / task_choice(cfg) / "runs"
    found = newest_by_step(runs.glob("*/checkpoints/last*.ckpt"))
    if not found:
        raise ConfigError(
            f"ckpt_path=last: no last.ckpt in {own.parent} nor in {runs}/*/checkpoints; "
            "pass ckpt_path=<run dir>/checkpoints/last.ckpt"
        )
    return str(found)


def recorded_step(path: Path) -> int:
    """The global step a checkpoint records (memory-mapped read); -1 for a file that is not one."""
    try:
        return int(safe_load(path, mmap=True).get("global_step", -1))
    except (ConfigError, OSError, ValueError, TypeError):
        return -1


def newest_by_step(paths: Iterable[Path]) -> Path | None:
    """The checkpoint furthest along by the step it records (file times change when a run
    directory is copied; names such as ``last-v1.ckpt`` say nothing of order); ties: the newer file.
    An unreadable file ranks last but is kept, so that a damaged ``last.ckpt`` is reported as such
    instead of another run being resumed in its place."""
    ranked = [(recorded_step(p), p.stat().st_mtime, p) for p in paths if p.is_file()]
    return max(ranked, key=lambda r: (r[0], r[1]))[2] if ranked else None


def task_choice(cfg: DictConfig) -> str:
    """The task's config name, as the run directory names it (``${hydra:runtime.choices.task}``)."""
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("task")
        if choice:
            return str(choice)
    return str(cfg.task.name)


def resumed_meta(ckpt_path: str | None) -> dict[str, Any]:
    """The headstart meta of the checkpoint a run resumes from ({} for none, or Lightning's own
    ``best``/``hpc`` values); read memory-mapped, so a large checkpoint costs nothing here."""
    if not ckpt_path or not Path(ckpt_path).is_file():
        return {}
    meta = safe_load(ckpt_path, mmap=True).get("headstart") or {}
    check_meta(meta, ckpt_path)  # plain data only: its tokenizer dir, thread count and W&B id are used
    return dict(meta)


def reuse_run_tokenizer(backbone: Any, meta: dict[str, Any]) -> bool:
    """Give a preset backbone the tokenizer its killed run trained (saved with the model config).

    Returns whether one was attached. Models with their own tokenizer (a hub checkpoint) and
    models without one (audio, vision) are left alone.
    """
    rebuild = meta.get("model_rebuild") or {}
    spec = backbone.data_spec() if rebuild else {}
    if "tokenizer" not in spec or spec["tokenizer"] is not None:
        return False
    folder = rebuild.get("tokenizer_dir") or rebuild.get("checkpoint")
    if not folder or not (Path(folder) / "tokenizer_config.json").is_file():
        return False
    custom = remote_code_file(folder)
    if custom is not None:
        raise ConfigError(f"{custom}: names its own code (auto_map); a resumed run's "
                          "tokenizer is the one headstart saved, which never does")
    from transformers import AutoTokenizer

    backbone.attach(tokenizer=AutoTokenizer.from_pretrained(folder))
    return True


def wandb_resume_kwargs(meta: dict[str, Any]) -> dict[str, Any]:
    """WandbLogger arguments that continue the checkpoint's W&B run ({} when it recorded none).

    A ``WANDB_SERVICE`` inherited from a parent process (a notebook or wrapper that used W&B)
    would make this run share the parent's wandb-core, which may still hold the killed run's id
    ("run ID ... is in use"): a resumed run starts its own service.
    """
    run_id = meta.get(WANDB_KEY)
    if not run_id:
        return {}
    os.environ.pop("WANDB_SERVICE", None)
    return {"id": str(run_id), "resume": "allow"}


def remember_wandb_run(meta: dict[str, Any], loggers: list[Any]) -> None:
    """Record the W&B run id in ``meta`` (a task's checkpoint meta), for a resumed run to continue it."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger.version:
            meta[WANDB_KEY] = str(logger.version)
