"""``python train.py task=... model=... data=...``: fit, test the best checkpoint, write metrics.json.

Reads top to bottom: seed, show the config, build, fit, test, write results.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from headstart.callbacks.checkpoint_averaging import CheckpointAveraging
from headstart.callbacks.data_skips import DataSkipReport
from headstart.callbacks.nonfinite import NonFiniteGuard
from headstart.callbacks.preemption import Preemption
from headstart.callbacks.throughput import Throughput, peak_memory_mb
from headstart.run.build import build, group_choices
from headstart.run.checks import CONF_DIR, check_ranges, check_resumed_task, exit_on_bad_choice
from headstart.run.config import output_dir, register_resolvers
from headstart.run.console import print_config_tree, print_run_locations
from headstart.run.errors import in_multirun, one_line_errors
from headstart.run.extras import extras
from headstart.run.hf_export import EXPORT_SUBDIR, push_to_hub, write_export
from headstart.run.multirun import pin_job_for_ddp_children
from headstart.run.results import scalar_metrics, write_metrics
from headstart.run.resume import remember_wandb_run, resolve_ckpt_path, resumed_meta
from headstart.run.safe_load import check_resume_checkpoint, safe_load
from headstart.run.threads import apply_thread_policy


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit (resuming from ``ckpt_path`` when set), test the best checkpoint, write metrics.json."""
    extras(cfg)
    check_ranges(cfg)  # data.batch_size=0, optim.lr=-1, trainer.max_steps=abc: one line (run/checks.py)
    cfg.ckpt_path = resolve_ckpt_path(cfg)  # ckpt_path=last: the checkpoint it means (run/resume.py)
    check_resume_checkpoint(cfg.get("ckpt_path"))  # a directory or a missing file: one line
    # intra-op threads = the cores this process may use, or the resumed run's count (run/threads.py)
    resumed = resumed_meta(cfg.ckpt_path)  # read once, safely: threads here, tokenizer and W&B run in build
    check_resumed_task(resumed, group_choices(cfg), cfg.ckpt_path)
    apply_thread_policy(cfg, resumed=resumed.get("threads"))
    lightning.seed_everything(cfg.seed, workers=True)
    print_config_tree(cfg)
    built = build(cfg, resumed=resumed)
    save_resolved_config(cfg, built.trainer)
    trainer, task, datamodule = built.trainer, built.task, built.datamodule
    if cfg.get("export"):
        task.hf_export(validate_only=True)  # export=true on a task without an exact export: one line, before fitting
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    remember_wandb_run(task.meta, trainer.loggers)  # a resumed run continues this W&B run
    task.meta["threads"] = torch.get_num_threads()  # ... and computes with the same thread count

    pin_job_for_ddp_children()
    start = time.perf_counter()
    preemption = find_callback(trainer, Preemption)
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except SIGTERMException:
        # SIGTERM landed after the callback's batch-end check (or during validation): Lightning
        # ends fit with this exit; the callback has saved last.ckpt in on_exception by then.
        if not getattr(preemption, "preempted", False):
            raise
    fit_seconds = time.perf_counter() - start
    preempted = bool(getattr(preemption, "preempted", False))  # leave at once
    if not preempted and not scalar_metrics(trainer.callback_metrics, ("val/",)):
        # Stopped (max_steps) before any validation: measure the final weights once.
        trainer.validate(task, datamodule=datamodule)
    results: dict[str, Any] = scalar_metrics(trainer.callback_metrics)

    best = best_checkpoint(trainer)
    if not preempted and cfg.get("test", True) and datamodule.has_test:
        tested = trainer.test(task, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        for metrics in tested:
            results.update(scalar_metrics(metrics))

    throughput = find_callback(trainer, Throughput)
    skips = find_callback(trainer, DataSkipReport)
    results.update(
        best_checkpoint=best,
        fit_seconds=round(fit_seconds, 3),
        train_samples_per_second=round(throughput.samples_per_second, 3) if throughput else None,
        peak_memory_mb=round(peak_memory_mb(task.device), 1),
        global_step=trainer.global_step,
        data_skipped=skips.total if skips else 0,
        nonfinite_skipped=getattr(find_callback(trainer, NonFiniteGuard), "skipped_steps", 0),
        preempted=preempted,
    )
    if getattr(task, "exported_pretrained", None):  # pretraining tasks: the backbone in HF format
        results["pretrained_dir"] = task.exported_pretrained
    if trainer.is_global_zero:
        write_metrics(Path(output_dir(cfg)) / "metrics.json", results)
        if cfg.get("export") and not preempted:  # after metrics.json: the card reads the results
            results["hf_dir"] = str(export_best(task, best, Path(output_dir(cfg)) / EXPORT_SUBDIR, results))
            write_metrics(Path(output_dir(cfg)) / "metrics.json", results)
            if cfg.get("push_to_hub"):
                print(f"pushed: {push_to_hub(Path(results['hf_dir']), str(cfg.push_to_hub))}")
    finish_wandb()
    end_process_group()
    print_run_locations(output_dir(cfg), {"metrics": Path(output_dir(cfg)) / "metrics.json"}, trainer.loggers)
    return results


def best_checkpoint(trainer: Trainer) -> str:
    """Path of the best checkpoint by the task's monitor (the last one when nothing was monitored);
    the averaged checkpoint when checkpoint averaging ran."""
    averaging = find_callback(trainer, CheckpointAveraging)
    if averaging is not None and averaging.path:
        return averaging.path
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor and callback.best_model_path:
            return str(callback.best_model_path)
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.last_model_path:
            return str(callback.last_model_path)
    return ""


def export_best(task: Any, best: str, directory: Path, results: dict[str, Any]) -> Path:
    """``export=true``: the weights the results describe (the best checkpoint, read as data; the
    final weights when there is none) in the Hugging Face format (run/hf_export.py)."""
    if best:
        task.load_state_dict(safe_load(best)["state_dict"])
    path = write_export(task.cpu(), directory, results)
    print(f"export: {path} (transformers' from_pretrained and pipeline() read it)")
    return path


def save_resolved_config(cfg: DictConfig, trainer: Trainer) -> None:
    """``<run dir>/config.yaml``: the config this run resolved to (the console shows it only with
    ``extras.print_config=true``; Hydra keeps the unresolved one in ``.hydra/``)."""
    if trainer.is_global_zero:
        path = Path(output_dir(cfg)) / "config.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, path, resolve=True)


def find_callback(trainer: Trainer, kind: type) -> Any:
    return next((cb for cb in trainer.callbacks if isinstance(cb, kind)), None)


# Set in the launching process by Lightning's DDP launcher; left behind, they make the next job
# of a multirun believe its processes were started externally, and it waits for peers forever.
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK", "LOCAL_WORLD_SIZE")


def end_process_group() -> None:
    """Close this job's DDP process group, so the next job of a multirun starts its own."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if in_multirun():
        for key in DDP_ENV:
            os.environ.pop(key, None)


def finish_wandb(exit_code: int = 0) -> None:
    """Close this job's W&B run so the next job of a multirun starts its own."""
    wandb = sys.modules.get("wandb")  # imported only when a W&B logger was used
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
@one_line_errors
def _main(cfg: DictConfig) -> float | None:
    try:
        results = train(cfg)
    except Exception:
        # A failed job closes its W&B run and process group too; otherwise the next job of a
        # multirun logs into this run (WandbLogger reuses an open one) or waits for peers.
        finish_wandb(exit_code=1)
        end_process_group()
        raise
    metric = cfg.get("optimized_metric")
    return results.get(metric) if metric else None


def main() -> None:
    register_resolvers()
    exit_on_bad_choice(sys.argv[1:])  # task=segmentaton: "did you mean", before Hydra's stock list
    _main()


if __name__ == "__main__":
    main()
