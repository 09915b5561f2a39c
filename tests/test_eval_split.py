"""eval.py without ``split``: test when the data has a test split, else val, and it says which."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import make_cfg
from headstart.eval import evaluate
from headstart.run.errors import ConfigError
from headstart.train import train

# text classification's synthetic data has train/val/test; text generation's has train/val only
# (as do summarization, translation, masked LM, audio pretraining and denoising by default).
WITH_TEST = [
    "task=text_classification", "model.preset=tiny", "trainer.max_steps=2", "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1", "trainer.num_sanity_val_steps=0", "data.batch_size=8",
    "data.synthetic_sizes={train: 32, val: 8, test: 8}",
]
WITHOUT_TEST = [
    "task=text_generation", "model.preset=tiny", "model.tokenizer_training.vocab_size=300", "trainer.max_steps=2",
    "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "data.batch_size=4", "data.block_size=32",
    "data.synthetic_sizes={train: 24, val: 8}", "task.generation.max_new_tokens=2",
]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("eval_split")
    return {
        "with_test": train(make_cfg(root / "with", *WITH_TEST))["best_checkpoint"],
        "without_test": train(make_cfg(root / "without", *WITHOUT_TEST))["best_checkpoint"],
    }


def test_no_split_tests_when_the_data_has_a_test_split(tmp_path: Path, checkpoints: dict[str, str],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    metrics = evaluate(make_cfg(tmp_path, f"ckpt_path={checkpoints['with_test']}", config_name="eval"))
    out = capsys.readouterr().out
    assert "test/acc" in metrics and not any(k.startswith("val/") for k in metrics)
    assert "eval split: test (the data has a test split" in out
    assert f"metrics: {tmp_path / 'metrics.json'}" in out


def test_no_split_validates_when_the_data_has_no_test_split(tmp_path: Path, checkpoints: dict[str, str],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    metrics = evaluate(make_cfg(tmp_path, f"ckpt_path={checkpoints['without_test']}", config_name="eval"))
    out = capsys.readouterr().out
    assert "val/perplexity" in metrics and not any(k.startswith("test/") for k in metrics)
    assert "eval split: val (the data has no test split" in out


def test_explicit_test_split_on_data_without_one_is_a_config_error(tmp_path: Path, checkpoints: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="the data has no test split; use split=val"):
        evaluate(make_cfg(tmp_path, f"ckpt_path={checkpoints['without_test']}", "split=test", config_name="eval"))


def test_explicit_split_is_used_without_the_note(tmp_path: Path, checkpoints: dict[str, str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    metrics = evaluate(make_cfg(tmp_path, f"ckpt_path={checkpoints['with_test']}", "split=val", config_name="eval"))
    assert "val/acc" in metrics and "eval split:" not in capsys.readouterr().out
    with pytest.raises(ConfigError, match="split=train is not one of val, test"):
        evaluate(make_cfg(tmp_path, f"ckpt_path={checkpoints['with_test']}", "split=train", config_name="eval"))
