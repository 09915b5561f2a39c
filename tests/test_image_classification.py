"""Image classification end to end: train, resume, eval, predict, bad input, precision."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from conftest import make_cfg
from headstart.data.errors import DataError
from headstart.eval import evaluate
from headstart.predict import predict
from headstart.run.errors import ConfigError
from headstart.train import train

SHORT = [
    "model.preset=tiny",
    "trainer.max_steps=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "data.batch_size=8",
    "data.synthetic_sizes={train: 24, val: 16, test: 16}",
]


@pytest.mark.parametrize("model", ["vit", "convnext"])
def test_each_model_trains_and_writes_metrics(tmp_path: Path, model: str) -> None:
    cfg = make_cfg(tmp_path, f"model={model}", *SHORT)
    results = train(cfg)
    written = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("val/acc", "val/acc_top5", "val/f1_macro", "test/acc", "test/acc_top5", "test/f1_macro",
                "best_checkpoint", "fit_seconds", "train_samples_per_second", "peak_memory_mb"):
        assert key in written, key
    assert written["val/acc"] == pytest.approx(results["val/acc"])
    assert Path(written["best_checkpoint"]).is_file()
    assert written["train_samples_per_second"] > 0 and written["global_step"] == 3


def test_resume_from_last_checkpoint_continues_step_and_optimizer(tmp_path: Path) -> None:
    first = make_cfg(tmp_path / "a", *SHORT, "trainer.max_steps=4", "callbacks.last_checkpoint.every_n_train_steps=2",
                     "test=false")
    train(first)
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 4
    saved_state = saved["optimizer_states"][0]["state"]
    assert saved["lr_schedulers"][0]["last_epoch"] == 4  # the schedule steps once per optimizer step

    # What the resumed optimizer holds when it takes its first step: the checkpoint's moments, step
    # count and learning rates (a fresh start would hold no moments, step 0 and the warm-up rate).
    at_first_step: list[tuple[dict[int, dict[str, torch.Tensor]], list[float]]] = []

    def capture(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not at_first_step:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            state = {i: {k: v.clone() for k, v in optimizer.state[p].items()} for i, p in enumerate(params) if optimizer.state[p]}
            at_first_step.append((state, [group["lr"] for group in optimizer.param_groups]))

    resumed = make_cfg(tmp_path / "b", *SHORT, "trainer.max_steps=6", f"ckpt_path={last}", "test=false")
    handle = register_optimizer_step_pre_hook(capture)
    try:
        results = train(resumed)
    finally:
        handle.remove()
    assert results["global_step"] == 6
    state, lrs = at_first_step[0]
    assert state.keys() == saved_state.keys() and lrs == saved["lr_schedulers"][0]["_last_lr"]
    for index, moments in saved_state.items():
        assert state[index]["step"].item() == 4
        assert torch.equal(state[index]["exp_avg"], moments["exp_avg"]) and torch.equal(state[index]["exp_avg_sq"], moments["exp_avg_sq"])
    again = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert again["lr_schedulers"][0]["last_epoch"] == again["global_step"] == 6
    assert "RNGState" in "".join(again["callbacks"].keys())


def test_eval_and_predict_from_checkpoint(tmp_path: Path, shapes_folder: Path) -> None:
    cfg = make_cfg(tmp_path / "run", *SHORT, "data.source=folder", f"data.path={shapes_folder}")
    results = train(cfg)
    ckpt = results["best_checkpoint"]

    eval_cfg = make_cfg(tmp_path / "eval", f"ckpt_path={ckpt}", "split=test", config_name="eval")
    metrics = evaluate(eval_cfg)
    assert metrics["test/acc"] == pytest.approx(results["test/acc"], abs=1e-6)
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["test/acc"] == pytest.approx(metrics["test/acc"])

    image = next((shapes_folder / "test").rglob("*.png"))
    pred_cfg = make_cfg(tmp_path / "pred", f"ckpt_path={ckpt}", f"inputs={image}", "predict.visualize=true",
                        config_name="predict")
    predict(pred_cfg)
    lines = (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    assert len(lines) == 1 and record["input"] == str(image)
    assert len(record["labels"]) == 3 and set(record["labels"]) == {"circle", "square", "triangle"}
    assert abs(sum(record["scores"]) - 1.0) < 1e-4
    assert len(list((tmp_path / "pred" / "visualizations").glob("*.png"))) == 1


def test_bf16_mixed_precision_runs(tmp_path: Path) -> None:
    results = train(make_cfg(tmp_path, *SHORT, "trainer.precision=bf16-mixed", "test=false"))
    assert results["global_step"] == 3 and results["val/loss"] == results["val/loss"]


def test_wrong_model_for_task_fails_before_work(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, "model=vit", "model.tasks=[speech_recognition]", *SHORT)
    with pytest.raises(ConfigError, match=r"model=vit does not serve task=image_classification; models for image_classification: convnext"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()


def test_missing_data_folder_is_one_clear_error(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, *SHORT, "data.source=folder", f"data.path={tmp_path / 'nowhere'}")
    with pytest.raises(DataError, match="nowhere: data folder not found"):
        train(cfg)


def test_corrupt_image_names_the_file_or_is_skipped(tmp_path: Path, shapes_folder: Path) -> None:
    bad = shapes_folder / "train" / "circle" / "zz_corrupt.png"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    overrides = [*SHORT, "data.source=folder", f"data.path={shapes_folder}", "trainer.max_steps=6", "test=false"]
    with pytest.raises(DataError, match="zz_corrupt.png"):
        train(make_cfg(tmp_path / "raise", *overrides))
    results = train(make_cfg(tmp_path / "skip", *overrides, "data.on_error=skip"))
    assert results["data_skipped"] == 1


def test_wandb_offline_run_logs_media(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, *SHORT, "logger=default", "test=false")
    train(cfg)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    media = list(runs[0].rglob("media/images/**/*.png"))
    assert media, "validation images were not logged"


def test_eval_cli_accepts_data_overrides_of_the_checkpoint(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from conftest import ROOT

    train(make_cfg(tmp_path / "run", *SHORT))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), f"ckpt_path={ckpt}", "split=val", "data.eval_batch_size=5",
         "data.num_workers=0", f"hydra.run.dir={tmp_path}/eval", "trainer.enable_progress_bar=false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "val/acc" in json.loads((tmp_path / "eval" / "metrics.json").read_text())


def test_vit_mean_pooling_averages_the_patch_tokens(tmp_path: Path) -> None:
    from hydra.utils import instantiate

    from headstart.run.build import MODEL_META_KEYS, without

    cfg = make_cfg(tmp_path, "model=vit", "model.preset=tiny", "model.pooling=mean")
    backbone = instantiate(without(cfg.model, MODEL_META_KEYS), _convert_="all").eval()
    with torch.no_grad():
        out = backbone(torch.randn(2, 3, 32, 32))
    # [CLS] (position 0) left out: the mean of the 64 patch tokens
    assert torch.allclose(out.pooled, out.hidden_states[:, 1:].mean(dim=1))
    assert not torch.allclose(out.pooled, out.hidden_states[:, 0])
