"""Plain HTML pages of text predictions: inline styles, every piece of user text escaped.

One self-contained file, no scripts or external assets, so it opens from a laptop, a server's
file browser or a W&B artifact alike.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from headstart.viz.text_png import Colours, Span, label_colour

STYLE = ("font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; line-height: 1.6; color: #222")
CELL = "border: 1px solid #ccc; padding: 6px 10px; vertical-align: top; white-space: pre-wrap"


def esc(text: object) -> str:
    """``text`` safe inside HTML (quotes too)."""
    return html.escape(str(text), quote=True)


def marked(text: str, spans: Sequence[Span], colours: Colours | None = None) -> str:
    """``text`` with each [start, end) span in a <mark> coloured by its label, the label in small
    capitals after it. Overlapping spans: the earlier one wins."""
    out, last = [], 0
    for start, end, label in sorted(spans, key=lambda s: (s[0], -s[1])):
        if start < last or end <= start:
            continue
        r, g, b = label_colour(label, 0.6, colours)
        tag = f' <b style="font-size: 0.7em; color: rgb{label_colour(label, 0.0, colours)}">{esc(label)}</b>' if label else ""
        out += [esc(text[last:start]),
                f'<mark style="background: rgb({r},{g},{b}); padding: 0 2px; border-radius: 3px">{esc(text[start:end])}{tag}</mark>']
        last = end
    return "".join(out + [esc(text[last:])])


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A bordered table; ``rows`` hold HTML already (escape user text with :func:`esc` / :func:`marked`)."""
    head = "".join(f'<th style="{CELL}; background: #f3f3f3; text-align: left">{esc(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f'<td style="{CELL}">{cell}</td>' for cell in row) + "</tr>" for row in rows)
    return f'<table style="border-collapse: collapse; width: 100%"><tr>{head}</tr>{body}</table>'


def write_page(path: Path, title: str, body: str) -> Path:
    """A UTF-8 HTML page with ``title`` (escaped) and ``body`` (HTML)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{esc(title)}</title></head>\n'
                    f'<body style="{STYLE}"><h1 style="font-size: 1.4em">{esc(title)}</h1>\n{body}\n</body></html>\n',
                    encoding="utf-8")
    return path
