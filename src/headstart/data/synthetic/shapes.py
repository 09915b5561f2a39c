"""A learnable image-classification set made on the fly from a seed: one shape per image.

Each example is a deterministic function of (seed, index): a shape of one of several
classes, in a random colour, position, size and rotation, over a random background
with clutter (lines and dots) so that colour or position alone never gives the class.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon")


def _polygon(cx: float, cy: float, radius: float, sides: int, angle: float) -> list[tuple[float, float]]:
    return [
        (cx + radius * math.cos(angle + 2 * math.pi * k / sides), cy + radius * math.sin(angle + 2 * math.pi * k / sides))
        for k in range(sides)
    ]


def _star(cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        r = radius if k % 2 == 0 else radius * 0.45
        a = angle + math.pi * k / 5
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def draw_shape(
    draw: ImageDraw.ImageDraw, name: str, cx: float, cy: float, radius: float, angle: float, colour: tuple
) -> None:
    """Draw shape ``name`` centred at (cx, cy) with circumradius ``radius``."""
    if name == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
    elif name == "ring":
        width = max(2, int(radius * 0.35))
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=colour, width=width)
    elif name == "square":
        draw.polygon(_polygon(cx, cy, radius, 4, angle), fill=colour)
    elif name == "diamond":
        draw.polygon(_polygon(cx, cy, radius, 4, math.pi / 4 + 0.2 * math.sin(angle)), fill=colour)
    elif name == "triangle":
        draw.polygon(_polygon(cx, cy, radius, 3, angle), fill=colour)
    elif name == "hexagon":
        draw.polygon(_polygon(cx, cy, radius, 6, angle), fill=colour)
    elif name == "star":
        draw.polygon(_star(cx, cy, radius, angle), fill=colour)
    elif name == "cross":
        arm = radius * 0.33
        c, s = math.cos(angle), math.sin(angle)
        for dx, dy in ((1, 0), (0, 1)):
            ex, ey = (dx * c - dy * s) * radius, (dx * s + dy * c) * radius
            draw.line([cx - ex, cy - ey, cx + ex, cy + ey], fill=colour, width=max(2, int(2 * arm)))
    else:
        raise ValueError(f"unknown shape '{name}'; known shapes: {', '.join(SHAPES)}")


LUMA = np.array([0.299, 0.587, 0.114])


def _colour(rng: np.random.Generator, avoid: np.ndarray | None = None, contrast: float = 0.0) -> tuple[int, int, int]:
    """A random colour whose luminance differs from ``avoid``'s by at least ``contrast`` (0-255)."""
    while True:
        colour = rng.integers(0, 256, size=3)
        if avoid is None or abs(float(LUMA @ (colour - avoid))) >= contrast:
            return tuple(int(c) for c in colour)


def _bright_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A random hue with luminance of at least 150."""
    while True:
        colour = rng.integers(0, 256, size=3)
        if float(LUMA @ colour) >= 150:
            return tuple(int(c) for c in colour)


def render_shape_image(seed: int, index: int, size: int, classes: tuple[str, ...], clutter: int = 6) -> tuple[Image.Image, int]:
    """Example ``index`` of the set with ``seed``: (RGB image size x size, class index)."""
    rng = np.random.default_rng([seed, index])
    label = int(rng.integers(len(classes)))
    # Dark background, bright shape of any hue: the outline is visible at a glance, while
    # neither colour nor brightness tells the class.
    background = rng.integers(0, 96, size=3)
    image = Image.new("RGB", (size, size), tuple(int(c) for c in background))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, clutter + 1))):  # clutter: thin lines and dots
        colour = _colour(rng, background, contrast=30)
        x0, y0, x1, y1 = rng.uniform(0, size, 4)
        if rng.random() < 0.5:
            draw.line([x0, y0, x1, y1], fill=colour, width=1)
        else:
            r = rng.uniform(0.5, 1.5) * size / 64
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=colour)
    radius = rng.uniform(0.2, 0.38) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    draw_shape(draw, classes[label], cx, cy, radius, rng.uniform(0, 2 * math.pi), _bright_colour(rng))
    return image, label
