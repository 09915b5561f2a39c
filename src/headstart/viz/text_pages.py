"""Pictures of text predictions: one HTML page for all inputs, one PNG per input.

- :func:`scores_page`: each text above a bar chart of its top-k labels (text classification).
- :func:`spans_page`: texts with labelled spans (NER entities, a QA answer), HTML + PNGs.
- :func:`pairs_page`: input beside output (generation, summarization, translation, denoising).
- :func:`fills_page`: the top-k tokens at every [MASK] (masked LM).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from headstart.viz.figure import draw_each, file_stem, new_figure, note, save_figure, top_k_bars, wrap
from headstart.viz.html import esc, marked, table, write_page
from headstart.viz.text_png import Span, columns_png, label_colours, spans_png

PAGE = "index.html"


def html_rows(records: list[dict[str, Any]], row: Callable[[dict[str, Any]], list[str]]) -> list[list[str]]:
    """``["#", *row(record)]`` per record; a record whose row fails is warned about and left out."""
    rows = []
    for i, record in enumerate(records):
        try:
            rows.append([str(i), *row(record)])
        except Exception as err:  # noqa: BLE001 - one odd record must not lose the page
            warnings.warn(f"predict.visualize: input {i} left off the page: {type(err).__name__}: {err}", stacklevel=2)
    return rows


def _or_empty(spans_of: Callable[[dict[str, Any]], list[Span]], record: dict[str, Any]) -> list[Span]:
    """The record's spans, or none when they cannot be read (that record is then warned about once, when drawn)."""
    try:
        return spans_of(record)
    except Exception:  # noqa: BLE001
        return []


def write_table_page(out_dir: Path, title: str, headers: Sequence[str], rows: list[list[str]]) -> list[Path]:
    """``out_dir/index.html``: one table row per input."""
    return [write_page(out_dir / PAGE, title, table(["#", *headers], rows))]


def scores_png(path: Path, text: str, labels: Sequence[str], scores: Sequence[float], empty: str = "no label predicted") -> Path:
    """The (wrapped) input text as the title of a bar chart of its top-k labels."""
    fig, ax = new_figure(8, 1.2 + 0.45 * max(2, len(labels)))
    if labels:
        top_k_bars(ax, labels, scores, wrap(text, 90, 4))
    else:
        ax.set_axis_off()
        ax.set_title(wrap(text, 90, 4), fontsize=10)
        note(ax, empty)
    return save_figure(fig, path)


def scores_page(records: list[dict[str, Any]], out_dir: Path, title: str, text_of: Callable[[dict[str, Any]], str],
                empty: str = "no label predicted") -> list[Path]:  # fmt: skip
    """Records with "labels" and "scores" (best first): an HTML table and a PNG bar chart per input."""

    def draw(i: int, record: dict[str, Any], out: Path) -> list[Path]:
        return [scores_png(out / f"{file_stem(i, None)}.png", text_of(record), record["labels"], record["scores"], empty)]

    def row(record: dict[str, Any]) -> list[str]:
        return [esc(text_of(record)), "<br>".join(f"{esc(label)} {score:.3f}" for label, score in zip(record["labels"], record["scores"]))
                or f"<i>{esc(empty)}</i>"]  # fmt: skip

    pngs = draw_each(records, out_dir, draw)
    return write_table_page(out_dir, title, ["text", "labels (probability)"], html_rows(records, row)) + pngs


def spans_page(records: list[dict[str, Any]], out_dir: Path, title: str, text_of: Callable[[dict[str, Any]], str],
               spans_of: Callable[[dict[str, Any]], list[Span]],
               headings_of: Callable[[dict[str, Any]], list[tuple[str, str]]] = lambda r: []) -> list[Path]:  # fmt: skip
    """An HTML page with each text and its spans marked, and a PNG per input of the same."""
    colours = label_colours([label for r in records for *_, label in _or_empty(spans_of, r)])

    def row(record: dict[str, Any]) -> list[str]:
        head = "".join(f"<div><b>{esc(h)}:</b> {esc(body)}</div>" for h, body in headings_of(record))
        spans = spans_of(record)
        return [head + f"<div>{marked(text_of(record), spans, colours)}</div>" + ("" if spans else "<i>(nothing found)</i>")]

    def draw(i: int, record: dict[str, Any], out: Path) -> list[Path]:
        return [spans_png(out / f"{file_stem(i, None)}.png", text_of(record), spans_of(record), headings_of(record), colours)]

    pngs = draw_each(records, out_dir, draw)
    return write_table_page(out_dir, title, ["text"], html_rows(records, row)) + pngs


def pairs_page(records: list[dict[str, Any]], out_dir: Path, title: str,
               columns: Sequence[tuple[str, Callable[[dict[str, Any]], str]]]) -> list[Path]:  # fmt: skip
    """An HTML table of (heading, text-of-record) columns side by side, and a PNG per input."""

    def draw(i: int, record: dict[str, Any], out: Path) -> list[Path]:
        return [columns_png(out / f"{file_stem(i, None)}.png", [(head, get(record)) for head, get in columns])]

    pngs = draw_each(records, out_dir, draw)
    rows = html_rows(records, lambda r: [esc(get(r)) for _, get in columns])
    return write_table_page(out_dir, title, [head for head, _ in columns], rows) + pngs


def fills_png(path: Path, text: str, masks: Sequence[dict[str, Any]], max_masks: int = 6) -> Path:
    """The input above one top-k bar chart per [MASK] (its position in the input's tokens)."""
    shown = list(masks)[:max_masks]
    fig, axes = new_figure(4.2 * max(1, len(shown)), 3.4, cols=max(1, len(shown)), wspace=0.6)
    axes = list(axes) if len(shown) > 1 else [axes]
    title = wrap(text, 40 * max(1, len(shown)), 4)
    fig.suptitle(title, fontsize=10, y=1.0 + 0.06 * title.count("\n"), va="bottom")
    for k, (ax, mask) in enumerate(zip(axes, shown)):
        top_k_bars(ax, mask["tokens"], mask["scores"], f"mask {k + 1} (token {mask['position']})")
    if not shown:
        axes[0].set_axis_off()
        note(axes[0], "no mask token in this input")
    return save_figure(fig, path)


def fills_cell(masks: Sequence[dict[str, Any]]) -> str:
    """HTML: per mask its top-k tokens with probabilities, best in bold."""
    items = []
    for k, mask in enumerate(masks):
        fills = ", ".join((f"<b>{esc(t)}</b>" if j == 0 else esc(t)) + f" {s:.3f}"
                          for j, (t, s) in enumerate(zip(mask["tokens"], mask["scores"])))
        items.append(f"<div>mask {k + 1}: {fills}</div>")
    return "".join(items) or "<i>(no mask token)</i>"


def fills_page(records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Fill-mask records ({"text", "masks": [{"position", "tokens", "scores"}], "filled"}): an HTML
    table and a PNG of top-k bar charts per input."""

    def text(record: dict[str, Any]) -> str:
        return record["text"] if record.get("text") is not None else record.get("filled", "")

    def draw(i: int, record: dict[str, Any], out: Path) -> list[Path]:
        return [fills_png(out / f"{file_stem(i, None)}.png", text(record), record["masks"])]

    pngs = draw_each(records, out_dir, draw)
    rows = html_rows(records, lambda r: [esc(text(r)), fills_cell(r["masks"]), esc(r["filled"])])
    return write_table_page(out_dir, "masked LM: top-k fills", ["text", "top-k tokens per mask", "best fill"], rows) + pngs
