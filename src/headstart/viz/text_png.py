"""Text as PNG: wrapped monospace text with labelled, coloured spans, and columns side by side.

A monospace font makes every character the same width, so a character span [start, end) of the
text maps to a rectangle without measuring words. The font is DejaVu Sans Mono, which ships
with matplotlib (PIL's built-in bitmap font has no sizes and few glyphs).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from headstart.viz.boxes import PALETTE

Span = tuple[int, int, str]  # [start, end) character offsets and a label ("" draws no tag)
MARGIN, WHITE, INK, GREY = 12, (255, 255, 255), (20, 20, 20), (110, 110, 110)


@lru_cache(maxsize=8)
def font(size: int = 14) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans Mono at ``size`` px (PIL's default font when matplotlib's copy is missing)."""
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans Mono"), size)
    except (ImportError, OSError, ValueError):
        return ImageFont.load_default()


Colours = dict[str, tuple[int, int, int]]


def label_colours(labels: Sequence[str]) -> Colours:
    """Distinct colours for up to len(PALETTE) labels (sorted, so a page and its PNGs agree)."""
    return {label: PALETTE[k % len(PALETTE)] for k, label in enumerate(sorted(set(labels)))}


def label_colour(label: str, light: float = 0.0, colours: Colours | None = None) -> tuple[int, int, int]:
    """``label``'s colour from ``colours``, else one fixed by its name; ``light`` mixes in white."""
    base = (colours or {}).get(label) or PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]
    return tuple(round(c + (255 - c) * light) for c in base)  # type: ignore[return-value]


def wrap_offsets(text: str, width: int) -> list[tuple[int, int]]:
    """[start, end) of each line when ``text`` is wrapped at ``width`` characters (newlines kept,
    lines broken after a space where one is near, else mid-word)."""
    lines, start = [], 0
    while start < len(text):
        newline = text.find("\n", start, start + width + 1)
        if newline != -1:
            lines.append((start, newline))
            start = newline + 1
            continue
        end = min(len(text), start + width)
        if end < len(text):
            space = text.rfind(" ", start + width // 2, end + 1)
            end = space + 1 if space != -1 else end
        lines.append((start, end))
        start = end
    return lines or [(0, 0)]


def text_block(text: str, spans: Sequence[Span] = (), width: int = 88, size: int = 14, heading: str = "",
               colours: Colours | None = None) -> Image.Image:  # fmt: skip
    """``text`` wrapped at ``width`` characters; each span on a light background in its label's
    colour with the label written under its first character. ``heading`` goes above in grey."""
    face, small = font(size), font(max(8, size - 4))
    char_w = face.getlength("M")
    line_h = int(size * 1.45) + (int(size * 0.9) if any(label for *_, label in spans) else 0)
    lines = wrap_offsets(text, width)
    top = int(size * 1.6) if heading else 0
    columns = max([len(heading), 24, *(le - ls for ls, le in lines)])  # short texts make narrow pictures
    canvas = Image.new("RGB", (int(min(width, columns) * char_w) + 2 * MARGIN + 40, top + len(lines) * line_h + 2 * MARGIN), WHITE)
    draw = ImageDraw.Draw(canvas)
    if heading:
        draw.text((MARGIN, MARGIN), heading, font=face, fill=GREY)
    for row, (ls, le) in enumerate(lines):
        y = MARGIN + top + row * line_h
        for start, end, label in spans:
            s, e = max(start, ls), min(end, le)
            if s >= e:
                continue
            x0, x1 = MARGIN + (s - ls) * char_w, MARGIN + (e - ls) * char_w
            colour = label_colour(label, 0.0, colours)
            draw.rectangle([x0 - 1, y - 1, x1 + 1, y + size + 3], fill=label_colour(label, 0.6, colours), outline=colour)
            if label and s == start:
                draw.text((x0, y + size + 3), label, font=small, fill=colour)
        draw.text((MARGIN, y), text[ls:le], font=face, fill=INK)
    return canvas


def excerpt(text: str, spans: Sequence[Span] = (), limit: int = 2400) -> tuple[str, list[Span]]:
    """At most ``limit`` characters of ``text`` around its first span (a long context would make a
    picture metres tall), "…" where cut, spans moved along and those outside dropped."""
    if len(text) <= limit:
        return text, list(spans)
    centre = min((s for s, _, _ in spans), default=0)
    start = max(0, min(centre - limit // 3, len(text) - limit))
    lead = "…" if start else ""
    cut = lead + text[start : start + limit] + ("…" if start + limit < len(text) else "")
    moved = [(s - start + len(lead), e - start + len(lead), label) for s, e, label in spans if s >= start and e <= start + limit]
    return cut, moved


def stack(blocks: Sequence[Image.Image], horizontal: bool = False, gap: int = 6) -> Image.Image:
    """Blocks one under the other (or side by side), tops / lefts aligned, on white, split by grey bars."""
    if horizontal:
        size = (sum(b.width for b in blocks) + gap * (len(blocks) - 1), max(b.height for b in blocks))
    else:
        size = (max(b.width for b in blocks), sum(b.height for b in blocks) + gap * (len(blocks) - 1))
    canvas, offset = Image.new("RGB", size, WHITE), 0
    draw = ImageDraw.Draw(canvas)
    for k, block in enumerate(blocks):
        canvas.paste(block, (offset, 0) if horizontal else (0, offset))
        offset += block.width if horizontal else block.height
        if k < len(blocks) - 1:
            bar = [offset, 0, offset + gap - 1, size[1]] if horizontal else [0, offset, size[0], offset + gap - 1]
            draw.rectangle(bar, fill=(225, 225, 225))
        offset += gap
    return canvas


def spans_png(path: Path, text: str, spans: Sequence[Span], headings: Sequence[tuple[str, str]] = (),
              colours: Colours | None = None) -> Path:  # fmt: skip
    """A PNG of short (heading, text) blocks (e.g. the question) above ``text`` with its spans."""
    blocks = [text_block(excerpt(body, limit=600)[0], heading=head) for head, body in headings]
    blocks.append(text_block(*excerpt(text, spans), colours=colours))
    path.parent.mkdir(parents=True, exist_ok=True)
    stack(blocks).save(path)
    return path


def columns_png(path: Path, columns: Sequence[tuple[str, str]], width: int = 56) -> Path:
    """A PNG of (heading, text) columns side by side: input | output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stack([text_block(excerpt(body)[0], width=width, heading=head) for head, body in columns], horizontal=True).save(path)
    return path
