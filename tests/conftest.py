"""Shared test helpers: compose the real config tree, offline, into a temp run directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from headstart.run.checks import CONF_DIR
from headstart.run.config import register_resolvers

ROOT = Path(__file__).resolve().parents[1]

# No test touches the network; W&B runs are real but offline.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("WANDB_API_KEY", None)
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The suite owns its machine: in-process runs use every allowed core (or OMP_NUM_THREADS), not a
# count measured at the first run, when pip or a previous subprocess may still have been busy.
if not os.environ.get("OMP_NUM_THREADS"):
    from headstart.run.threads import pin_threads

    pin_threads()


# Learning tests whose threshold has not yet been seen to pass on an idle 2-core machine (they
# were tuned while the machine was heavily shared). They stay in the suite and run with
# HEADSTART_RUN_UNVERIFIED=1; each moves out of this list once it has passed there.
UNVERIFIED_LEARNING: tuple[str, ...] = ()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_unverified = os.environ.get("HEADSTART_RUN_UNVERIFIED") == "1"
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))
        if not run_unverified and any(name in item.nodeid for name in UNVERIFIED_LEARNING):
            item.add_marker(
                pytest.mark.skip(reason="learning threshold not yet verified on an idle machine; HEADSTART_RUN_UNVERIFIED=1 runs it")
            )


# Keep CPU runs short and quiet: no workers, no W&B unless a test asks for it.
FAST = [
    *([] if torch.cuda.is_available() else ["trainer.accelerator=cpu"]),
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "data.num_workers=0",
    "logger=csv",
]
NO_RICH = ["~callbacks.rich_progress_bar", "~callbacks.rich_model_summary"]


def make_cfg(tmp_path: Path, *overrides: str, config_name: str = "train", fast: bool = True) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` as the command line would, with run dirs under tmp_path."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name,
            overrides=[
                *(FAST if fast else []),
                *(NO_RICH if fast and config_name == "train" else []),
                *overrides,
                f"paths.root_dir={tmp_path}",
                f"paths.output_dir={tmp_path}",
            ],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture(autouse=True)
def _wandb_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    # An in-process W&B run earlier in the session leaves WANDB_SERVICE (its wandb-core's
    # address) in os.environ; a train.py subprocess would inherit it and share that service,
    # which keeps a SIGKILLed run's id registered ("run ID ... is in use" on resume).
    monkeypatch.delenv("WANDB_SERVICE", raising=False)


@pytest.fixture
def shapes_folder(tmp_path: Path) -> Path:
    """A small ImageFolder tree (train/ val/ test/) of synthetic shape PNGs."""
    from headstart.data.synthetic.shapes import render_shape_image

    classes = ("circle", "square", "triangle")
    root = tmp_path / "shapes"
    for split, n in (("train", 24), ("val", 9), ("test", 9)):
        for i in range(n):
            image, label = render_shape_image(7 + len(split), i, 48, classes)
            path = root / split / classes[label] / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
    return root
