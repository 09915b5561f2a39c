"""The end of every pretraining run: the backbone saved in the Hugging Face format in the run directory.

``<run dir>/pretrained`` then starts any downstream task: ``model.checkpoint=<run dir>/pretrained``.
A pretraining task mixes ``ExportsPretrained`` in and implements ``export_pretrained(directory)``
(the backbone's ``save_pretrained``: weights, config, tokenizer or feature extractor; plus the
pretraining head weights under the family's HF names where it has a pretraining class).
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

EXPORT_SUBDIR = "pretrained"


class ExportsPretrained:
    """Mixin for a ``Task``: on fit end, global rank zero writes ``<run dir>/pretrained``.

    The run directory is the one the rest of the run uses (``paths.output_dir``, saved in the task's
    meta by ``run.build``), falling back to the trainer's ``default_root_dir`` for a task built by hand.
    ``self.exported_pretrained`` holds the written path (train.py puts it in metrics.json).
    """

    exported_pretrained: str | None = None

    def export_pretrained(self, directory: Path) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement export_pretrained(directory)")

    def pretrained_dir(self) -> Path:
        paths = (getattr(self, "meta", None) or {}).get("config", {}).get("paths", {})
        run_dir = paths.get("output_dir") or self.trainer.default_root_dir
        return Path(run_dir) / EXPORT_SUBDIR

    def on_fit_end(self) -> None:
        directory = self.pretrained_dir()
        if self.trainer.is_global_zero:
            directory.mkdir(parents=True, exist_ok=True)
            self.export_pretrained(directory)
            log.info("pretrained backbone exported (Hugging Face format): %s", directory)
            print(f"pretrained: {directory}  (fine-tune with model.checkpoint={directory})")
        self.exported_pretrained = str(directory)
        super_end = getattr(super(), "on_fit_end", None)
        if super_end is not None:
            super_end()
