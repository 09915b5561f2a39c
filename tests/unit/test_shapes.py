"""The synthetic shapes set is deterministic, balanced and varied."""

from __future__ import annotations

from collections import Counter

import numpy as np

from headstart.data.synthetic.shapes import SHAPES, render_shape_image


def test_same_seed_same_image_other_seed_other_image() -> None:
    a, la = render_shape_image(3, 11, 64, SHAPES)
    b, lb = render_shape_image(3, 11, 64, SHAPES)
    c, _ = render_shape_image(4, 11, 64, SHAPES)
    assert la == lb and np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_every_class_appears_and_backgrounds_vary() -> None:
    draws = [render_shape_image(0, i, 32, SHAPES[:6]) for i in range(300)]
    counts = Counter(label for _, label in draws)
    assert set(counts) == set(range(6)) and min(counts.values()) > 25
    corners = {tuple(np.asarray(img)[0, 0]) for img, _ in draws}
    assert len(corners) > 100  # colour alone never identifies the class
