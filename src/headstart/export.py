"""``python export.py ckpt_path=<ckpt> [out=<dir>] [push_to_hub=<repo id>]``: a trained model in
the Hugging Face format (issue 23).

The directory holds what ``from_pretrained`` and ``pipeline()`` read: ``config.json`` (labels,
generation settings), ``model.safetensors``, the tokenizer / image processor / feature extractor /
CTC processor of the run, and ``README.md``, a hub model card whose ``model-index`` carries the
run's ``val/*`` and ``test/*`` results. ``train.py export=true`` writes the same from the run's
best checkpoint into ``<run>/hf``. Each task's conversion is its ``hf_export()``
(tasks/export.py): only exact ones exist, and a task without one says so in one line.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from headstart.run.checkpoint import load_checkpoint, rebuild
from headstart.run.entry import checkpoint_command
from headstart.run.extras import extras
from headstart.run.hf_export import EXPORT_SUBDIR, push_to_hub, run_results, write_export


def export(cfg: DictConfig) -> Path:
    """Rebuild the checkpoint's task (run/checkpoint.py: read as data) and write its export."""
    extras(cfg)
    checkpoint = load_checkpoint(cfg.ckpt_path)
    built = rebuild(cfg, checkpoint)
    out = Path(cfg.out) if cfg.get("out") else Path(cfg.ckpt_path).resolve().parent.parent / EXPORT_SUBDIR
    directory = write_export(built.task, out, run_results(cfg.ckpt_path))
    print(f"export: {directory} (transformers' from_pretrained and pipeline() read it)")
    if cfg.get("push_to_hub"):
        print(f"pushed: {push_to_hub(directory, str(cfg.push_to_hub))}")
    return directory


main = checkpoint_command("export", export)


if __name__ == "__main__":
    main()
