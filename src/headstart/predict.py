"""``python predict.py ckpt_path=... inputs=<file|folder|glob>``: predictions.jsonl (+ pictures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning
from omegaconf import DictConfig

from headstart.run.checkpoint import load_checkpoint, rebuild
from headstart.run.config import output_dir
from headstart.run.entry import checkpoint_command
from headstart.run.extras import extras
from headstart.run.threads import apply_thread_policy


def predict(cfg: DictConfig) -> list[dict[str, Any]]:
    """Run the checkpoint on ``inputs``; one JSON record per input, in input order."""
    extras(cfg)
    apply_thread_policy(cfg)  # intra-op threads = the cores this process may use (run/threads.py)
    lightning.seed_everything(cfg.seed, workers=True)
    checkpoint = load_checkpoint(cfg.ckpt_path)
    built = rebuild(cfg, checkpoint)
    built.datamodule.set_predict_inputs(cfg.inputs)
    out_dir = Path(cfg.predict.output_dir or output_dir(cfg))
    out_dir.mkdir(parents=True, exist_ok=True)
    if hasattr(built.task, "predict_dir"):  # tasks that write files (depth maps, masks) put them here
        built.task.predict_dir = str(out_dir)
    batches = built.trainer.predict(built.task, datamodule=built.datamodule)
    records = [record for batch in batches or [] for record in batch]
    path = out_dir / "predictions.jsonl"
    with path.open("w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    print(f"predictions: {path} ({len(records)} inputs)")
    if cfg.predict.visualize:
        pictures = built.task.visualize(records, out_dir / "visualizations") or []
        pages = [p for p in pictures if p.suffix == ".html"]  # text tasks: one page of all inputs
        print(f"pictures: {pages[0] if pages else out_dir / 'visualizations'} ({len(pictures) - len(pages)} PNG)")
    return records


main = checkpoint_command("predict", predict)


if __name__ == "__main__":
    main()
