"""A learnable detection set made on the fly from a seed: several shapes per image, with boxes.

Each example is a deterministic function of (seed, index): one to ``max_objects`` shapes of
random classes, colours, sizes (``size_range`` of the image side, as circumradius) and
rotations, placed at random so that they may overlap (later ones drawn on top), over a random
background with a little clutter. Each box is the tight box of its shape's own pixels.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from headstart.data.synthetic.shapes import _colour, draw_shape


def render_detection_scene(
    seed: int,
    index: int,
    size: int,
    shapes: tuple[str, ...],
    max_objects: int = 3,
    size_range: tuple[float, float] = (0.12, 0.3),
    clutter: int = 4,
    contrast: float = 60.0,
) -> tuple[Image.Image, np.ndarray, list[int]]:
    """Example ``index``: (RGB image size x size, boxes [N, 4] xyxy pixels float32, class per box).

    Shapes have a luminance at least ``contrast`` (0-255) away from the background's, so that
    every box is visible."""
    rng = np.random.default_rng([seed, index])
    background = np.array(_colour(rng))
    image = Image.new("RGB", (size, size), tuple(int(c) for c in background))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, clutter + 1))):  # thin lines and dots: never a box
        colour = _colour(rng, background)
        x0, y0, x1, y1 = rng.uniform(0, size, 4)
        if rng.random() < 0.5:
            draw.line([x0, y0, x1, y1], fill=colour, width=1)
        else:
            r = rng.uniform(0.5, 1.5) * size / 64
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=colour)
    boxes, labels = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(len(shapes)))
        radius = rng.uniform(*size_range) * size
        cx, cy = rng.uniform(radius * 0.6, size - radius * 0.6, 2)
        angle = rng.uniform(0, 2 * math.pi)
        colour = _colour(rng, background, contrast)
        mask = Image.new("L", (size, size), 0)
        draw_shape(ImageDraw.Draw(mask), shapes[label], cx, cy, radius, angle, 255)  # type: ignore[arg-type]
        box = mask.getbbox()
        if box is None:
            continue
        draw_shape(draw, shapes[label], cx, cy, radius, angle, colour)
        boxes.append(box)
        labels.append(label)
    return image, np.asarray(boxes, dtype=np.float32).reshape(-1, 4), labels
