"""matplotlib pieces every prediction picture shares: a headless figure, top-k bars, notes, saving.

predict.py draws with the Agg back-end (no display needed, the same on a server and a laptop);
matplotlib is imported on first use, so training never pays for it.
:func:`draw_each` runs one drawing per record and turns a failure into a one-line warning, so a
picture that cannot be drawn never costs the user the predictions already written.
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

BAR_COLOUR, TOP_COLOUR = "#9db4d1", "#1f5fa8"


def pyplot() -> Any:
    """matplotlib.pyplot on the headless Agg back-end (imported here, not by the training path)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1, **gridspec: Any) -> tuple[Figure, Any]:
    """A figure of width x height inches and its axes (an array when rows * cols > 1)."""
    return pyplot().subplots(rows, cols, figsize=(width, height), gridspec_kw=gridspec or None, squeeze=True)


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG (parents made) and free it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return path


def wrap(text: str, width: int = 80, max_lines: int = 6) -> str:
    """``text`` wrapped to ``width`` columns, cut after ``max_lines`` lines with an ellipsis."""
    lines = textwrap.wrap(" ".join(str(text).split()), width) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 1] + "…"
    return "\n".join(lines)


def top_k_bars(ax: Axes, labels: Sequence[str], scores: Sequence[float], title: str = "top-k scores") -> None:
    """Horizontal bars of ``scores`` (probabilities, best first), the best one highlighted."""
    if not labels:
        note(ax, "no label predicted")
        return
    y = list(range(len(labels)))[::-1]  # best at the top
    colours = [TOP_COLOUR] + [BAR_COLOUR] * (len(labels) - 1)
    ax.barh(y, scores, color=colours)
    ax.set_yticks(y, [str(label) for label in labels])
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    ax.set_title(title, fontsize=10)
    for yi, score in zip(y, scores):
        ax.text(min(float(score), 0.8) + 0.02, yi, f"{float(score):.3f}", va="center", fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)


def note(ax: Axes, text: str) -> None:
    """``text`` in a white box in the middle of ``ax`` (e.g. "nothing detected above threshold 0.5")."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=11,
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "#c0392b", "alpha": 0.9})


def show_image(ax: Axes, image: Any, title: str = "") -> None:
    """An image without axes ticks, with an optional title."""
    ax.imshow(image)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)


def file_stem(index: int, name: str | None) -> str:
    """``00003_<file stem>`` for a picture of record ``index``; the stem made safe for a file name."""
    stem = Path(str(name or "")).stem if name else ""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60]
    return f"{index:05d}_{safe}" if safe else f"{index:05d}"


def draw_each(records: list[dict[str, Any]], out_dir: Path, draw: Callable[[int, dict[str, Any], Path], list[Path]]) -> list[Path]:
    """Call ``draw(index, record, out_dir)`` for every record; return every file written.

    A record whose picture fails is reported in one line and skipped: the predictions are
    already on disk, and one odd input must not hide the other pictures.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for i, record in enumerate(records):
        try:
            written += draw(i, record, out_dir)
        except Exception as err:  # noqa: BLE001 - reported, then the next record is drawn
            warnings.warn(f"predict.visualize: no picture for input {i} ({record.get('input', '?')}): "
                          f"{type(err).__name__}: {err}", stacklevel=2)
            pyplot().close("all")
    return written
