"""After a multirun: one table of every job (overrides, final metrics, run dir, status).

A Hydra callback. The table is rewritten as each job ends (so it is complete even when a
failed job makes Hydra stop with an error after the sweep) and printed when the sweep ends.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

HEADLINE = ("status", "job", "overrides")


class SweepSummary(Callback):
    def __init__(self, metrics: list[str] | None = None) -> None:
        self.metrics = list(metrics or [])
        self.rows: list[dict[str, Any]] = []

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        hydra_cfg = job_return.hydra_cfg.hydra if job_return.hydra_cfg is not None else None
        if hydra_cfg is None or str(hydra_cfg.mode) != "RunMode.MULTIRUN":
            return
        run_dir = Path(hydra_cfg.runtime.output_dir)
        row: dict[str, Any] = {
            "job": hydra_cfg.job.num,
            "_overrides": list(job_return.overrides or []),
            "status": "ok" if job_return.status == JobStatus.COMPLETED else "FAILED",
            "run_dir": str(run_dir),
        }
        if job_return.status != JobStatus.COMPLETED:
            error = job_return._return_value
            row["error"] = (f"{type(error).__name__}: {error}".splitlines() or [""])[0][:300]
        metrics_path = run_dir / "metrics.json"
        if metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text())
            row.update({k: v for k, v in metrics.items() if k.startswith(("val/", "test/")) or k in ("fit_seconds",)})
        self.rows.append(row)
        # The job's folder is <sweep dir>/<job num>; hydra_cfg.sweep.dir itself interpolates the
        # main config (paths.log_dir, task.name), which the job's hydra node alone cannot resolve.
        self._write(run_dir.parent)
        swept = " ".join(row["_overrides"])
        print(f"[sweep] job {row['job']} {row['status']}: {swept}" + (f" -> {row['error']}" if "error" in row else ""))

    def table(self) -> list[dict[str, Any]]:
        """Rows sorted by job; ``overrides`` shows only what differs between jobs."""
        common = set.intersection(*(set(r["_overrides"]) for r in self.rows)) if len(self.rows) > 1 else set()
        rows = []
        for row in sorted(self.rows, key=lambda r: r["job"]):
            shown = {k: v for k, v in row.items() if k != "_overrides"}
            shown["overrides"] = " ".join(o for o in row["_overrides"] if o not in common)
            rows.append(shown)
        return rows

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.rows:
            print(self.markdown())

    def columns(self) -> list[str]:
        extra = sorted({k for row in self.rows for k in row} - {*HEADLINE, "run_dir", "error", "_overrides"})
        if self.metrics:
            extra = [m for m in self.metrics if m in extra] + [m for m in extra if m not in self.metrics]
        return [*HEADLINE, *extra, "run_dir", "error"]

    def markdown(self) -> str:
        cols = self.columns()
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in self.table():
            cells = [_fmt(row.get(c, "")) for c in cols]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def _write(self, sweep_dir: Path) -> None:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        cols = self.columns()
        with (sweep_dir / "summary.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=cols)
            writer.writeheader()
            for row in self.table():
                writer.writerow({c: row.get(c, "") for c in cols})
        (sweep_dir / "summary.md").write_text(self.markdown() + "\n")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")
