"""What a user sees: debug=limit|profiler, the extras group, conf/local/, the closing console line,
and library noise left out (errors never)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig

from conftest import ROOT, make_cfg
from headstart.run.checks import CONF_DIR
from headstart.run.config import register_resolvers
from headstart.run.console import print_config_tree
from headstart.run.errors import ConfigError
from headstart.run.extras import LIGHTNING_INFO_LOGGER, extras
from headstart.train import train

TINY_TEXT = ["task=text_classification", "model.preset=tiny", "trainer.num_sanity_val_steps=0"]
LOCAL = "# @package _global_\ntags: [from_local]\ntrainer:\n  max_steps: 2\n"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def records() -> Iterator[_Records]:
    """Messages reaching Lightning's info logger, after its filters (so after the noise filter)."""
    handler, logger = _Records(), logging.getLogger(LIGHTNING_INFO_LOGGER)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.mark.parametrize("name", ["train", "eval", "predict"])
def test_extras_and_debug_groups_compose_in_every_entry_point(tmp_path: Path, name: str) -> None:
    extra = {"train": [], "eval": ["ckpt_path=x.ckpt"], "predict": ["ckpt_path=x.ckpt", "inputs=x.png"]}[name]
    cfg = make_cfg(tmp_path, *extra, config_name=name)
    assert dict(cfg.extras) == {"print_config": False, "enforce_tags": False, "ignore_warnings": False}
    assert "local" not in cfg  # no conf/local/default.yaml: the optional entry composes to nothing
    limit = make_cfg(tmp_path, *extra, "debug=limit", config_name=name).trainer
    assert (limit.limit_train_batches, limit.limit_val_batches, limit.max_epochs) == (10, 5, 3)
    assert make_cfg(tmp_path, *extra, "debug=profiler", config_name=name).trainer.profiler == "simple"


def test_debug_limit_caps_batches_per_epoch_and_epochs(tmp_path: Path) -> None:
    # 24 examples in batches of 2: 12 a full epoch, 10 under debug=limit, for 3 epochs
    sizes = "data.synthetic_sizes={train: 24, val: 12, test: 12}"
    cfg = make_cfg(tmp_path, *TINY_TEXT, "debug=limit", "data.batch_size=2", sizes)
    results = train(cfg)
    assert results["global_step"] == 30 and "test/acc" in results


def test_debug_profiler_reports_where_the_time_went(tmp_path: Path) -> None:
    handler, logger = _Records(), logging.getLogger("lightning.pytorch.profilers.profiler")
    logger.addHandler(handler)
    old_level, logger.level = logger.level, logging.INFO
    try:
        sizes = "data.synthetic_sizes={train: 16, val: 8, test: 8}"
        train(make_cfg(tmp_path, *TINY_TEXT, "debug=profiler", "data.batch_size=8", sizes))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    report = next((m for m in handler.messages if "FIT Profiler Report" in m), "")
    assert "run_training_batch" in report and "optimizer_step" in report


def test_enforce_tags_fails_in_one_line_and_never_prompts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"extras.enforce_tags=true: name this run's tags, e.g. tags=\["):
        train(make_cfg(tmp_path, *TINY_TEXT, "extras.enforce_tags=true"))
    extras(make_cfg(tmp_path, *TINY_TEXT, "extras.enforce_tags=true", "tags=[baseline]"))  # tagged: fine


def test_print_config_obeys_extras(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    print_config_tree(make_cfg(tmp_path))  # off by default (issue 26: a quiet console)
    assert capsys.readouterr().out == ""
    print_config_tree(make_cfg(tmp_path, "extras.print_config=true"))
    assert "CONFIG" in capsys.readouterr().out
    print_config_tree(make_cfg(tmp_path, "debug=limit"))  # every debug config turns it on
    assert "CONFIG" in capsys.readouterr().out


def test_a_run_saves_the_config_it_resolved_to(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    train(make_cfg(tmp_path, *TINY_TEXT, "trainer.max_steps=1", "trainer.limit_val_batches=1", "test=false"))
    saved = OmegaConf.load(tmp_path / "config.yaml")
    assert saved.task.name == "text_classification" and saved.trainer.max_steps == 1
    assert "${" not in (tmp_path / "config.yaml").read_text()  # resolved


def test_noise_is_dropped_but_other_warnings_and_errors_stay(tmp_path: Path, records: _Records) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extras(make_cfg(tmp_path))
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning)
        warnings.warn("a warning about the user's own data", UserWarning)
        Trainer(logger=CSVLogger(str(tmp_path)), accelerator="cpu", enable_progress_bar=False)
        logging.getLogger(LIGHTNING_INFO_LOGGER).error("💡 Tip: an error with a noisy prefix still shows")
    assert [str(w.message) for w in caught] == ["a warning about the user's own data"]
    assert any(m.startswith("GPU available") for m in records.messages)  # Lightning's info still shows
    assert not any("litlogger" in m for m in records.messages)  # the real Trainer's tip was dropped
    assert "💡 Tip: an error with a noisy prefix still shows" in records.messages


def test_ignore_warnings_silences_every_python_warning(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extras(make_cfg(tmp_path, "extras.ignore_warnings=true"))
        warnings.warn("anything", UserWarning)
    assert caught == []


def compose_with_local(local_dir: Path) -> DictConfig:
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[f"hydra.searchpath=[file://{local_dir}]", "paths.output_dir=."])


def test_a_local_config_is_picked_up_and_one_without_its_header_is_refused(tmp_path: Path) -> None:
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "default.yaml").write_text(LOCAL)
    cfg = compose_with_local(tmp_path)
    assert list(cfg.tags) == ["from_local"] and cfg.trainer.max_steps == 2
    (tmp_path / "local" / "default.yaml").write_text("tags: [lost]\n")
    with pytest.raises(ConfigError, match="conf/local/default.yaml: start the file with `# @package _global_`"):
        extras(compose_with_local(tmp_path))


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_local_configs_are_git_ignored_but_the_folder_is_kept() -> None:
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    assert ignored("conf/local/default.yaml") and ignored("conf/local/gpu_box.yaml")
    assert not ignored("conf/local/.gitkeep") and not ignored("conf/local/README.md")


@pytest.mark.slow  # a real process with W&B offline: 90 s wall on a busy 2-core machine
def test_train_cli_ends_with_one_line_saying_where_everything_is(tmp_path: Path) -> None:
    """A real `python train.py` with W&B offline; conf/local/ comes in through --config-dir."""
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "default.yaml").write_text(LOCAL)  # sets trainer.max_steps=2
    run_dir = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--config-dir", str(tmp_path), *TINY_TEXT, "logger=default",
         "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false",
         "trainer.enable_model_summary=false", "extras.print_config=false", "data.num_workers=0",
         "data.synthetic_sizes={train: 16, val: 8, test: 8}", "data.batch_size=8", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    expected = f"run: {run_dir} | metrics: {run_dir / 'metrics.json'} | W&B: offline, upload with `wandb sync "
    assert last.startswith(expected), last
    sync_dir = Path(last.split("wandb sync ")[1].rstrip("`"))
    assert sync_dir.is_dir() and sync_dir.parent == run_dir / "wandb"
    assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == 2  # from conf/local
    assert "CONFIG" not in proc.stdout  # extras.print_config=false
    assert "GPU available" in proc.stderr  # Lightning's own lines still show...
    assert "💡 Tip" not in proc.stderr and "LeafSpec" not in proc.stderr  # ...its noise does not


def test_an_unknown_group_option_says_did_you_mean_and_lists_only_real_choices() -> None:
    from headstart.run.checks import check_group_choices
    from headstart.run.errors import ConfigError

    with pytest.raises(ConfigError, match=r"task=segmentaton is not an option of task: did you mean task=segmentation\?") as info:
        check_group_choices(["task=segmentaton", "model.preset=tiny"])
    assert "monitors" not in str(info.value)  # task/segmentation/ holds internal parts, not choices
    with pytest.raises(ConfigError, match=r"did you mean experiment=synthetic/image_classification_vit\?"):
        check_group_choices(["experiment=synthetic/image_clasification_vit"])
    with pytest.raises(ConfigError, match=r"model=bret is not an option of model: did you mean model=bert\?"):
        check_group_choices(["-m", "model=bert,bret"])  # each job of a sweep
    check_group_choices(["experiment=synthetic/image_classification_vit", "model=bert", "optim=choice(adamw,sgd)",
                         "data=null", "trainer.max_steps=3", "+extras.x=1", "hydra.run.dir=x"])


def test_a_hub_checkpoint_offline_is_one_line_not_hydras_wrapped_trace(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "task=text_classification", "model.checkpoint=bert-base-uncased",
                           "extras.print_config=false", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: could not load checkpoint 'bert-base-uncased'")
    assert "model.preset=tiny" in proc.stderr.strip().splitlines()[-1]
    assert "Error in call to target" not in proc.stderr and "Error executing job" not in proc.stderr


def test_a_missing_column_names_the_config_key_that_names_another(tmp_path: Path) -> None:
    """summarization predict on a JSONL whose text is under "article": the error says which key to set."""
    from headstart.data.errors import DataError
    from headstart.data.text_lm import read_prompts

    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"article": "a long document"}) + "\n")
    with pytest.raises(DataError, match=r"in.jsonl:1: missing column 'document' \(columns: article\); set data.source_column=<column>"):
        read_prompts(str(inputs), ("document", "text", "source"), "raise", key="source_column")
