"""A learnable segmentation set made on the fly from a seed: shapes on a cluttered background.

Each example is a deterministic function of (seed, index): one to ``max_shapes`` shapes of
random classes, colours, sizes and rotations (later ones may occlude earlier ones) over a
random background with thin clutter lines and dots. Ground truth is panoptic: segment 1 is
the background ("stuff", class 0), each visible shape is its own segment ("thing") whose
class is 1 + its index in ``shapes``. Semantic and instance targets derive from it.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from headstart.data.synthetic.shapes import _colour, draw_shape

BACKGROUND = "background"


def render_segmentation_scene(
    seed: int,
    index: int,
    size: int,
    shapes: tuple[str, ...],
    max_shapes: int = 3,
    clutter: int = 6,
    size_range: tuple[float, float] = (0.22, 0.36),
    contrast: float = 60.0,
) -> tuple[Image.Image, np.ndarray, list[int]]:
    """Example ``index``: (RGB image size x size, segment id map [size, size] int32, class per segment).

    ``classes[k]`` is the class of segment ``k + 1``; class 0 is the background. Shapes have a
    circumradius in ``size_range`` (fraction of the side) and a luminance at least ``contrast``
    (0-255) away from the background's, so that every shape is visible.
    """
    rng = np.random.default_rng([seed, index])
    background = np.array(_colour(rng))
    image = Image.new("RGB", (size, size), tuple(int(c) for c in background))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, clutter + 1))):
        colour = _colour(rng, background)
        x0, y0, x1, y1 = rng.uniform(0, size, 4)
        if rng.random() < 0.5:
            draw.line([x0, y0, x1, y1], fill=colour, width=1)
        else:
            r = rng.uniform(0.5, 1.5) * size / 64
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=colour)
    ids = Image.new("L", (size, size), 1)
    id_draw = ImageDraw.Draw(ids)
    classes = [0]
    for k in range(int(rng.integers(1, max_shapes + 1))):
        label = int(rng.integers(len(shapes)))
        radius = rng.uniform(*size_range) * size
        cx, cy = rng.uniform(radius, size - radius, 2)
        angle = rng.uniform(0, 2 * math.pi)
        draw_shape(draw, shapes[label], cx, cy, radius, angle, _colour(rng, background, contrast))
        draw_shape(id_draw, shapes[label], cx, cy, radius, angle, k + 2)  # type: ignore[arg-type]
        classes.append(label + 1)
    id_map = np.asarray(ids, dtype=np.int32)
    return image, id_map, classes
