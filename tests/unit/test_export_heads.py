"""Keeping a transformers task model's head (tasks/export.py, issue 23): rows follow the data's
labels by name, a no-object row stays last, other labels or another kind of head start fresh."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from headstart.backbones.base import CheckpointHead
from headstart.tasks.export import keep_checkpoint_head, label_rows

NAMES = {"proj.weight": "class_predictor.weight", "proj.bias": "class_predictor.bias"}
PER_LABEL = ("proj.weight", "proj.bias")


M2F = "Mask2FormerForUniversalSegmentation"


def head_and_backbone(labels: list[str], architecture: str = M2F) -> tuple[torch.nn.Module, SimpleNamespace]:
    head = torch.nn.Module()
    head.proj = torch.nn.Linear(4, 3)
    state = {"class_predictor.weight": torch.arange(12.0).view(3, 4), "class_predictor.bias": torch.tensor([0.0, 1.0, 2.0])}
    return head, SimpleNamespace(checkpoint="ckpt", checkpoint_head=CheckpointHead(architecture, labels, state))


def test_label_rows_match_by_name_in_any_order_then_case_insensitively() -> None:
    assert label_rows(["cat", "dog"], ["dog", "cat"]) == [1, 0]
    assert label_rows(["Cat", "Dog"], ["dog", "cat"]) == [1, 0]
    assert label_rows(["cat", "dog"], ["cat", "bird"]) is None and label_rows(None, ["cat"]) is None


def test_the_no_object_row_stays_last_when_the_label_rows_are_reordered() -> None:
    head, backbone = head_and_backbone(["cat", "dog"])
    line = keep_checkpoint_head("segmentation", backbone, head, "ForUniversalSegmentation", NAMES, ["dog", "cat"],
                                per_label=PER_LABEL, extra_rows=1)
    assert "kept its Mask2FormerForUniversalSegmentation head (labels matched by name, rows reordered" in line
    assert torch.equal(head.proj.weight, torch.arange(12.0).view(3, 4)[[1, 0, 2]])
    assert torch.equal(head.proj.bias, torch.tensor([1.0, 0.0, 2.0]))


def test_other_labels_or_another_kind_of_head_start_fresh_and_say_why() -> None:
    head, backbone = head_and_backbone(["cat", "dog"])
    before = head.proj.weight.detach().clone()
    line = keep_checkpoint_head("segmentation", backbone, head, "ForUniversalSegmentation", NAMES, ["cat", "bird"],
                                per_label=PER_LABEL, extra_rows=1)
    assert "re-initialised: its labels (cat, dog...) are not the data's (cat, bird...)" in line
    head2, backbone2 = head_and_backbone(["cat", "dog"], "DetrForObjectDetection")
    line2 = keep_checkpoint_head("segmentation", backbone2, head2, "ForUniversalSegmentation", NAMES, ["cat", "dog"])
    assert "is a DetrForObjectDetection; task=segmentation takes a *ForUniversalSegmentation head" in line2
    assert torch.equal(head.proj.weight, before)
    assert keep_checkpoint_head("segmentation", SimpleNamespace(checkpoint_head=None), head, "X", NAMES, None) is None
