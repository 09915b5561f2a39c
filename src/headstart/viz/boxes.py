"""Draw labelled boxes on pictures (predict.py's detection picture), and W&B's box format."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40), (128, 0, 0)]


def wandb_boxes(
    boxes: Any, label_ids: Sequence[int], class_names: dict[int, str], scores: Sequence[float] | None = None
) -> dict[str, Any]:
    """W&B ``boxes`` entry for normalised xyxy ``boxes`` [N, 4] (fractions of the image)."""
    data = []
    for k, (box, label) in enumerate(zip(boxes, label_ids)):
        x0, y0, x1, y1 = (float(v) for v in box)
        entry: dict[str, Any] = {
            "position": {"minX": x0, "minY": y0, "maxX": x1, "maxY": y1},
            "class_id": int(label),
            "box_caption": class_names[int(label)] if scores is None else f"{class_names[int(label)]} {scores[k]:.2f}",
        }
        if scores is not None:
            entry["scores"] = {"score": float(scores[k])}
        data.append(entry)
    return {"box_data": data, "class_labels": class_names}


def detection_png(path: Path, image: Image.Image, boxes: Sequence[Sequence[float]], labels: Sequence[str],
                  label_ids: Sequence[int], scores: Sequence[float], threshold: float) -> Path:  # fmt: skip
    """The image with xyxy pixel ``boxes`` outlined and captioned ``label score`` (predict.py's
    picture); with no box, "nothing detected above threshold <threshold>" written on it."""
    from matplotlib.patches import Rectangle

    from headstart.viz.figure import new_figure, note, save_figure, show_image

    fig, ax = new_figure(7, 7 * image.height / max(1, image.width) + 0.4)
    show_image(ax, image, f"{len(boxes)} detection{'s' * (len(boxes) != 1)} with score >= {threshold:g}")
    for box, label, label_id, score in zip(boxes, labels, label_ids, scores):
        colour = tuple(c / 255 for c in PALETTE[label_id % len(PALETTE)])
        x0, y0, x1, y1 = (float(v) for v in box)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=2))
        ax.text(x0, y0, f"{label} {score:.2f}", color="white", fontsize=9, va="bottom",
                bbox={"facecolor": colour, "edgecolor": "none", "pad": 1.5})
    if not boxes:
        note(ax, f"nothing detected above threshold {threshold:g}")
    return save_figure(fig, path)
