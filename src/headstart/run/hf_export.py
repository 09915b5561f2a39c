"""Writing an export: ``task.hf_export()`` saved with ``save_pretrained``, its processors, and a
hub model card (the entry point is ``headstart.export``; ``train.py export=true`` calls
:func:`write_export` on the run's best weights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from headstart.run.errors import ConfigError

EXPORT_SUBDIR = "hf"
CARD_METRIC_PREFIXES = ("val/", "test/")


def write_export(task: Any, directory: str | Path, results: dict[str, Any] | None = None) -> Path:
    """``task.hf_export()`` saved into ``directory`` with its processors and a model card."""
    directory = Path(directory)
    exported = task.hf_export()
    directory.mkdir(parents=True, exist_ok=True)
    exported.model.save_pretrained(str(directory))
    for processor in exported.processors:
        processor.save_pretrained(str(directory))
    card = model_card(exported, task.meta or {}, results or {})
    (directory / "README.md").write_text(card, encoding="utf-8")
    return directory


def card_results(results: dict[str, Any]) -> dict[str, float]:
    """The run's final ``val/*`` and ``test/*`` numbers (what metrics.json holds)."""
    return {key: float(value) for key, value in results.items()
            if key.startswith(CARD_METRIC_PREFIXES) and isinstance(value, (int, float)) and not isinstance(value, bool)}


def model_card(exported: Any, meta: dict[str, Any], results: dict[str, Any]) -> str:
    """The hub's model-card format: YAML front matter (library, pipeline tag, datasets, metrics,
    ``model-index`` with the results) and a body with the command and config that trained it."""
    from huggingface_hub import EvalResult, ModelCardData

    config = meta.get("config") or {}
    choices = meta.get("choices") or {}
    overrides = list((meta.get("compose") or {}).get("overrides") or [])
    data = config.get("data") or {}
    task_name = str(choices.get("task") or (config.get("task") or {}).get("name") or "task")
    dataset = data_name(data, choices)
    scores = card_results(results)
    name = f"headstart-{task_name}-{choices.get('model') or 'model'}"
    evals = [
        EvalResult(task_type=exported.pipeline_tag or task_name, dataset_type=dataset, dataset_name=dataset,
                   dataset_split=key.split("/", 1)[0], metric_type=key.split("/", 1)[1], metric_name=key,
                   metric_value=value)
        for key, value in sorted(scores.items())
    ]
    card = ModelCardData(
        library_name="transformers", pipeline_tag=exported.pipeline_tag, datasets=[dataset] if dataset else None,
        metrics=sorted({key.split("/", 1)[1] for key in scores}) or None, tags=["headstart", task_name],
        model_name=name, eval_results=evals or None,
    )
    command = " ".join(["python train.py", *overrides])
    lines = [
        "---", card.to_yaml(), "---", "", f"# {name}", "",
        f"Trained with [headstart](https://github.com/) (task `{task_name}`, model `{choices.get('model')}`) and "
        f"exported with `python export.py`; it loads with `{type(exported.model).__name__}.from_pretrained` "
        "and computes what headstart's checkpoint computes.", "",
        "## Training", "", "```", command, "```", "",
        f"Data: source `{data.get('source')}`, path `{data.get('path')}`, split as headstart's "
        f"`data` config `{choices.get('data')}` makes it (validation fraction {data.get('val_fraction', 'n/a')}).", "",
    ]
    if scores:
        lines += ["## Results", "", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {value:.6g} |" for key, value in sorted(scores.items())]
        lines += [""]
    lines += ["## Config", "", "```json", json.dumps({k: config.get(k) for k in ("task", "model", "data", "optim", "trainer")
                                                      if k in config}, indent=1, default=str)[:20000], "```", ""]
    return "\n".join(lines)


def data_name(data: dict[str, Any], choices: dict[str, Any]) -> str:
    """A dataset name for the card: the hub dataset, the data folder's name, or the data config's."""
    for key in ("hf_name", "dataset", "name"):
        if data.get(key):
            return str(data[key])
    if data.get("path"):
        return Path(str(data["path"])).name or str(data["path"])
    if data.get("source") == "synthetic":
        return "synthetic"
    return str(choices.get("data") or "unknown")


def push_to_hub(directory: Path, repo_id: str) -> str:
    """Upload ``directory`` to the hub repo ``repo_id`` (created when missing); one line offline."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    try:
        api = HfApi()
        api.create_repo(repo_id, exist_ok=True)
        info = api.upload_folder(folder_path=str(directory), repo_id=repo_id, commit_message="headstart export")
    except OfflineModeIsEnabled as error:
        raise ConfigError(
            f"export.push_to_hub={repo_id}: the hub is offline here (HF_HUB_OFFLINE=1); the export is in {directory}: "
            f"upload it later with `huggingface-cli upload {repo_id} {directory}`"
        ) from error
    except OSError as error:  # requests' connection errors are OSErrors
        raise ConfigError(
            f"export.push_to_hub={repo_id}: could not reach the hub ({type(error).__name__}); the export is in "
            f"{directory}: upload it later with `huggingface-cli upload {repo_id} {directory}`"
        ) from error
    return str(getattr(info, "commit_url", repo_id))


def run_results(ckpt_path: str) -> dict[str, Any]:
    """metrics.json of the run the checkpoint belongs to (``<run>/checkpoints/x.ckpt``), if any."""
    for folder in Path(ckpt_path).resolve().parents[:2]:
        path = folder / "metrics.json"
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                return {}
    return {}
