"""Semantic segmentation scores from one confusion matrix: mIoU, pixel accuracy, per-class IoU.

torchmetrics' JaccardIndex averages over every class, present or not; the field's mIoU
(mmsegmentation, ADE20K benchmark) averages over classes that occur in the ground truth or
the predictions, so this keeps the confusion matrix and reduces it that way.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


class SemanticIoU(Metric):
    """update(preds [N] or [H, W] class ids, target same shape, ``ignore_index`` pixels skipped).

    compute() -> {"miou", "pixel_acc", "iou_per_class" [C] (NaN where the class never occurs)}.
    """

    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int = -100) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state("confmat", default=torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        preds, target = preds.flatten().long(), target.flatten().long().to(preds.device)
        valid = target != self.ignore_index
        index = target[valid] * self.num_classes + preds[valid]
        self.confmat += torch.bincount(index, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)

    def compute(self) -> dict[str, torch.Tensor]:
        confmat = self.confmat.double()
        true_pos = confmat.diag()
        union = confmat.sum(0) + confmat.sum(1) - true_pos
        iou = torch.where(union > 0, true_pos / union.clamp(min=1), torch.full_like(union, float("nan")))
        present = union > 0
        miou = iou[present].mean() if present.any() else torch.zeros((), dtype=torch.float64)
        pixel_acc = true_pos.sum() / confmat.sum().clamp(min=1)
        return {"miou": miou.float(), "pixel_acc": pixel_acc.float(), "iou_per_class": iou.float()}
