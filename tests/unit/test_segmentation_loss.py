"""Segmentation losses, heads and post-processing against transformers' Mask2Former / SegFormer references."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from transformers import (
    Mask2FormerConfig,
    Mask2FormerImageProcessor,
    SegformerConfig,
    SegformerForSemanticSegmentation,
)
from transformers.models.mask2former import modeling_mask2former as m2f
from transformers.models.segformer.modeling_segformer import SegformerDecodeHead

from headstart.heads.mask_class import MaskClassHead
from headstart.heads.segformer_decoder import SegformerMLPDecoder
from headstart.losses.mask_criterion import MaskCriterion
from headstart.losses.mask_matcher import MaskHungarianMatcher
from headstart.losses.pixel_ce import PixelCrossEntropy
from headstart.ops.masks import (
    dice_loss,
    mask_iou,
    pairwise_dice_cost,
    pairwise_sigmoid_ce_cost,
    sigmoid_ce_loss,
)
from headstart.ops.point_sampling import get_uncertain_point_coords_with_randomness, point_sample
from headstart.ops.seg_postprocess import instance_segmentation, panoptic_segmentation, semantic_segmentation

NUM_CLASSES = 4
WEIGHTS = {"loss_cross_entropy": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}


def _targets(sizes: list[int], height: int = 32, width: int = 32, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "class_labels": torch.randint(0, NUM_CLASSES, (n,), generator=g),
            "masks": (torch.rand(n, height, width, generator=g) > 0.5).float(),
        }
        for n in sizes
    ]


def _outputs(layers: int, batch: int, queries: int = 6, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    cls = torch.randn(layers, batch, queries, NUM_CLASSES + 1, generator=g)
    masks = 3 * torch.randn(layers, batch, queries, size, size, generator=g)
    return cls, masks


def _reference_loss(cls: torch.Tensor, masks: torch.Tensor, targets: list[dict], num_points: int) -> dict:
    config = Mask2FormerConfig(num_labels=NUM_CLASSES, train_num_points=num_points)
    ref = m2f.Mask2FormerLoss(config, dict(WEIGHTS)).to(cls.device)
    aux = [{"masks_queries_logits": masks[i], "class_queries_logits": cls[i]} for i in range(len(cls) - 1)]
    return ref(masks[-1], cls[-1], [t["masks"] for t in targets], [t["class_labels"] for t in targets], aux)


# ---- ops ---------------------------------------------------------------------------------------


def test_point_sample_and_uncertain_points_match_reference() -> None:
    logits = torch.randn(5, 1, 12, 10)
    coords = torch.rand(5, 40, 2)
    assert torch.equal(point_sample(logits, coords), m2f.sample_point(logits, coords, align_corners=False))
    ref_loss = m2f.Mask2FormerLoss(Mask2FormerConfig(num_labels=NUM_CLASSES), WEIGHTS)
    torch.manual_seed(3)
    expected = ref_loss.sample_points_using_uncertainty(logits, ref_loss.calculate_uncertainty, 50, 3.0, 0.75)
    torch.manual_seed(3)
    got = get_uncertain_point_coords_with_randomness(logits, 50, 3.0, 0.75)
    assert torch.equal(got, expected)
    # The importance part really is the most uncertain: |logit| there is below the median of candidates.
    near_zero = point_sample(logits, got[:, :37]).abs().mean()
    assert near_zero < point_sample(logits, torch.rand(5, 200, 2)).abs().mean()


def test_mask_losses_and_costs_match_reference() -> None:
    logits, labels = torch.randn(7, 30), (torch.rand(4, 30) > 0.5).float()
    torch.testing.assert_close(pairwise_dice_cost(logits, labels), m2f.pair_wise_dice_loss(logits, labels))
    torch.testing.assert_close(
        pairwise_sigmoid_ce_cost(logits, labels), m2f.pair_wise_sigmoid_cross_entropy_loss(logits, labels)
    )
    batched = pairwise_dice_cost(torch.stack([logits, -logits]), torch.stack([labels, labels]))
    torch.testing.assert_close(batched[1], m2f.pair_wise_dice_loss(-logits, labels))
    torch.testing.assert_close(dice_loss(logits[:4], labels, 3.0), m2f.dice_loss(logits[:4], labels, 3.0))
    torch.testing.assert_close(
        sigmoid_ce_loss(logits[:4], labels, 3.0), m2f.sigmoid_cross_entropy_loss(logits[:4], labels, 3.0)
    )


def test_mask_iou() -> None:
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2] = True  # 8 px
    b = torch.zeros(3, 4, 4, dtype=torch.bool)
    b[0, :1] = True  # 4 px inside a[0]
    b[1] = True
    iou = mask_iou(a, b)
    torch.testing.assert_close(iou, torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]))


# ---- matcher -----------------------------------------------------------------------------------


def test_matcher_matches_reference_with_empty_image() -> None:
    cls, masks = _outputs(1, 3)
    targets = _targets([3, 0, 5])
    labels, tmasks = [t["class_labels"] for t in targets], [t["masks"] for t in targets]
    ref = m2f.Mask2FormerHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=300)
    torch.manual_seed(0)
    expected = ref(masks[0], cls[0], tmasks, labels)
    torch.manual_seed(0)
    got = MaskHungarianMatcher(num_points=300)(cls[0], masks[0], labels, tmasks)
    for (q, t), (eq, et) in zip(got, expected, strict=True):
        assert torch.equal(q, eq) and torch.equal(t, et)
    assert len(got[1][0]) == 0 and len(got[2][0]) == 5


def test_matcher_batched_equals_per_image() -> None:
    cls, masks = _outputs(1, 3, queries=5)
    targets = _targets([2, 5, 1], seed=1)  # 5 targets = 5 queries: a full assignment
    labels, tmasks = [t["class_labels"] for t in targets], [t["masks"] for t in targets]
    matcher = MaskHungarianMatcher(num_points=200)
    coords = matcher.sample_coords(3, "cpu")
    cost = matcher.cost_matrix(cls[0], masks[0], labels, tmasks, coords)
    start = 0
    for b in range(3):
        one = slice(b, b + 1)
        alone = matcher.cost_matrix(cls[0][one], masks[0][one], labels[one], tmasks[one], coords[one])
        n = len(labels[b])
        torch.testing.assert_close(cost[b, :, start : start + n], alone[0])
        start += n


def test_matcher_all_images_empty() -> None:
    cls, masks = _outputs(1, 2)
    empty = _targets([0, 0])
    labels, tmasks = [t["class_labels"] for t in empty], [t["masks"] for t in empty]
    out = MaskHungarianMatcher(num_points=50)(cls[0], masks[0], labels, tmasks)
    assert [len(q) for q, _ in out] == [0, 0]


# ---- criterion ---------------------------------------------------------------------------------


def test_criterion_equals_transformers_loss_with_aux_layers() -> None:
    cls, masks = _outputs(3, 3)
    targets = _targets([2, 0, 4])
    torch.manual_seed(1)
    expected = _reference_loss(cls, masks, targets, num_points=256)
    criterion = MaskCriterion(NUM_CLASSES, MaskHungarianMatcher(num_points=256), num_points=256)
    cls.requires_grad_(True)
    masks.requires_grad_(True)
    torch.manual_seed(1)
    got = criterion(cls, masks, targets)
    assert set(got) == set(expected) | {"loss"}
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value.detach(), atol=1e-5, rtol=1e-5)
    total = sum(WEIGHTS[name.rstrip("_0123456789")] * value for name, value in expected.items())
    torch.testing.assert_close(got["loss"].detach(), total.detach(), atol=1e-5, rtol=1e-5)
    got["loss"].backward()
    assert masks.grad.abs().sum() > 0 and cls.grad[0].abs().sum() > 0  # aux layer gets gradient too


def test_criterion_equals_reference_with_different_mask_sizes_and_list_input() -> None:
    cls, masks = _outputs(2, 2, size=12, seed=4)
    targets = _targets([3], 24, 20, seed=5) + _targets([2], 32, 28, seed=6)
    torch.manual_seed(7)
    expected = _reference_loss(cls, masks, targets, num_points=128)
    criterion = MaskCriterion(NUM_CLASSES, MaskHungarianMatcher(num_points=128), num_points=128)
    torch.manual_seed(7)
    got = criterion(list(cls), list(masks), targets)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_criterion_equals_transformers_loss_on_cuda() -> None:
    """Same random stream on device: per-image matcher draws and loss draws in the reference's order."""
    cls, masks = (x.cuda() for x in _outputs(3, 4))
    targets = [{k: v.cuda() for k, v in t.items()} for t in _targets([2, 0, 5, 3])]
    torch.manual_seed(1)
    expected = _reference_loss(cls, masks, targets, num_points=1024)
    criterion = MaskCriterion(NUM_CLASSES, MaskHungarianMatcher(num_points=1024), num_points=1024).cuda()
    torch.manual_seed(1)
    got = criterion(cls, masks, targets)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, atol=1e-5, rtol=1e-5)


def test_criterion_no_targets_at_all() -> None:
    cls, masks = _outputs(2, 2)
    masks.requires_grad_(True)
    criterion = MaskCriterion(NUM_CLASSES, MaskHungarianMatcher(num_points=64), num_points=64)
    got = criterion(cls, masks, _targets([0, 0]))
    assert got["loss_mask"] == 0 and got["loss_dice"] == 0 and got["loss_cross_entropy"] > 0
    got["loss"].backward()
    assert masks.grad is not None  # connected graph: DDP sees every parameter used


def test_criterion_weights_no_object_class() -> None:
    """With every query unmatched, CE is plain CE towards no-object: eos_coef cancels in the weighted mean."""
    cls, masks = _outputs(1, 1)
    criterion = MaskCriterion(NUM_CLASSES, MaskHungarianMatcher(num_points=16), eos_coef=0.1, num_points=16)
    got = criterion(cls, masks, _targets([0]))
    plain = torch.nn.functional.cross_entropy(cls[0, 0], torch.full((6,), NUM_CLASSES))
    torch.testing.assert_close(got["loss_cross_entropy"], plain)


_NUM_MASKS_RANK = """
import sys, torch, torch.distributed as dist
from headstart.losses.mask_criterion import MaskCriterion
rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method="file://" + sys.argv[2], rank=rank, world_size=2)
print(MaskCriterion._num_masks([3, 2] if rank == 0 else [1], torch.device("cpu")).item())
dist.destroy_process_group()
"""


def test_num_masks_is_averaged_across_ranks(tmp_path) -> None:
    """Two real gloo ranks: rank 1 a plain subprocess (spawn would re-import transformers), rank 0 here."""
    store = str(tmp_path / "store")
    cmd = [sys.executable, "-c", _NUM_MASKS_RANK, "1", store]
    other = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    dist.init_process_group("gloo", init_method="file://" + store, rank=0, world_size=2)
    try:
        here = MaskCriterion._num_masks([3, 2], torch.device("cpu")).item()
    finally:
        dist.destroy_process_group()
    assert other.communicate(timeout=60)[0].strip() == "3.0" and other.returncode == 0
    assert here == 3.0  # (5 + 1) / 2 masks on both ranks


# ---- heads and pixel CE ------------------------------------------------------------------------


def test_mask_class_head_shapes_and_reference_layout() -> None:
    head = MaskClassHead(in_features=8, num_classes=NUM_CLASSES)
    states = torch.randn(3, 2, 5, 8)
    out = head(states)
    assert out.shape == (3, 2, 5, NUM_CLASSES + 1)
    torch.testing.assert_close(head(list(states)), out)
    torch.testing.assert_close(out[1], torch.nn.functional.linear(states[1], head.proj.weight, head.proj.bias))


def _segformer_config() -> SegformerConfig:
    return SegformerConfig(
        num_channels=3, num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1],
        hidden_sizes=[8, 16, 24, 32], num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=16,
        num_labels=5, semantic_loss_ignore_index=255,
    )


def test_segformer_decoder_loads_and_equals_reference_head() -> None:
    config = _segformer_config()
    torch.manual_seed(0)
    ref = SegformerDecodeHead(config).eval()
    with torch.no_grad():  # non-trivial BN statistics so the test sees them
        ref.batch_norm.running_mean.normal_()
        ref.batch_norm.running_var.uniform_(0.5, 2.0)
    ours = SegformerMLPDecoder(config.hidden_sizes, config.decoder_hidden_size, config.num_labels).eval()
    ours.load_state_dict(ref.state_dict())
    feats = [torch.randn(2, c, 32 // s, 32 // s) for c, s in zip(config.hidden_sizes, [1, 2, 4, 8])]
    with torch.no_grad():
        expected, got = ref(feats), ours(feats)
    assert got.shape == (2, config.num_labels, 32, 32)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_labels", [5, 1])
def test_pixel_ce_equals_segformer_loss(num_labels: int) -> None:
    config = _segformer_config()
    config.num_labels = num_labels
    torch.manual_seed(0)
    model = SegformerForSemanticSegmentation(config).eval()
    pixels = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, num_labels if num_labels > 1 else 2, (2, 64, 64))
    labels[:, :8] = 255  # ignored rows
    with torch.no_grad():
        out = model(pixel_values=pixels, labels=labels)
    assert out.logits.shape[-1] == 16  # logits at 1/4: the loss must upsample
    got = PixelCrossEntropy(ignore_index=255)(out.logits, labels)
    torch.testing.assert_close(got["loss"], out.loss, atol=1e-5, rtol=1e-5)


# ---- post-processing ---------------------------------------------------------------------------


def _hand_made() -> tuple[torch.Tensor, torch.Tensor]:
    """One 8x8 image, 5 queries, 3 classes: left half below row 2 class 0, right top/bottom class 2 (stuff),
    a weaker class-1 query on rows :4 of the left half (wins only half of its mask), a no-object query."""
    cls = torch.full((1, 5, 4), -10.0)
    for q, c in enumerate([0, 2, 2, 1, 3]):
        cls[0, q, c] = 10.0
    cls[0, 3, 1], cls[0, 3, 3] = 3.0, 0.0  # p(class 1) ~ 0.95: below query 0, overlaps it
    masks = torch.full((1, 5, 8, 8), -10.0)
    masks[0, 0, 2:, :4] = 10.0
    masks[0, 1, :4, 4:] = 10.0
    masks[0, 2, 4:, 4:] = 10.0
    masks[0, 3, :4, :4] = 10.0  # wins rows :2 only: 8 of 16 pixels < overlap 0.8
    masks[0, 4] = 10.0
    return cls, masks


def test_semantic_segmentation_hand_made() -> None:
    cls, masks = _hand_made()
    (seg,) = semantic_segmentation(cls, masks, [(8, 8)])
    expected = torch.zeros(8, 8, dtype=torch.int64)
    expected[:2, :4] = 1  # rows 2-3 are class 1 too but less sure than class 0
    expected[:, 4:] = 2
    assert torch.equal(seg, expected)


def test_instance_segmentation_hand_made() -> None:
    cls, masks = _hand_made()
    (out,) = instance_segmentation(cls, masks, [(8, 8)], top_k=4, score_threshold=0.5)
    assert out["labels"].tolist() == [0, 2, 2, 1]
    assert out["masks"].sum((1, 2)).tolist() == [24, 16, 16, 16]
    assert torch.all(out["scores"][:3] > 0.99) and 0.9 < out["scores"][3] < 0.96


def test_panoptic_segmentation_hand_made_fuses_stuff_and_drops_overlapped() -> None:
    cls, masks = _hand_made()
    (out,) = panoptic_segmentation(cls, masks, [(8, 8)], label_ids_to_fuse={2})
    info = out["segments_info"]
    assert [(s["id"], s["label_id"], s["was_fused"]) for s in info] == [(1, 0, False), (2, 2, True)]
    expected = torch.ones(8, 8, dtype=torch.int32)
    expected[:2, :4] = 0  # the class-1 query is dropped by the overlap rule: void
    expected[:, 4:] = 2  # both right-hand queries fused into one segment
    assert torch.equal(out["segmentation"], expected)
    (unfused,) = panoptic_segmentation(cls, masks, [(8, 8)])
    assert [s["id"] for s in unfused["segments_info"]] == [1, 2, 3]
    (lenient,) = panoptic_segmentation(cls, masks, [(8, 8)], overlap_threshold=0.4)
    assert [s["label_id"] for s in lenient["segments_info"]] == [0, 2, 2, 1]


def _outputs_384(seed: int) -> m2f.Mask2FormerForUniversalSegmentationOutput:
    g = torch.Generator().manual_seed(seed)
    return m2f.Mask2FormerForUniversalSegmentationOutput(
        class_queries_logits=2 * torch.randn(2, 5, NUM_CLASSES + 1, generator=g),
        masks_queries_logits=torch.randn(2, 5, 384, 384, generator=g),
    )


def test_semantic_and_instance_match_transformers_post_processing() -> None:
    outputs, processor = _outputs_384(0), Mask2FormerImageProcessor()
    sizes = [(100, 120), (384, 384)]
    expected = processor.post_process_semantic_segmentation(outputs, target_sizes=sizes)
    got = semantic_segmentation(outputs.class_queries_logits, outputs.masks_queries_logits, sizes)
    for e, g in zip(expected, got, strict=True):
        assert torch.equal(e, g)
    ref = processor.post_process_instance_segmentation(outputs, threshold=0.0, return_binary_maps=True)
    ours = instance_segmentation(outputs.class_queries_logits, outputs.masks_queries_logits, [(384, 384)] * 2)
    for r, o in zip(ref, ours, strict=True):
        order = sorted(range(len(r["segments_info"])), key=lambda i: -r["segments_info"][i]["score"])
        assert [r["segments_info"][i]["label_id"] for i in order] == o["labels"].tolist()
        ref_scores = torch.tensor([r["segments_info"][i]["score"] for i in order])
        torch.testing.assert_close(o["scores"], ref_scores, atol=1e-6, rtol=0)
        assert torch.equal(r["segmentation"][order].bool(), o["masks"])


def test_panoptic_matches_transformers_post_processing() -> None:
    cls, masks = _hand_made()
    masks = torch.nn.functional.interpolate(masks, size=(384, 384), mode="nearest")
    outputs = m2f.Mask2FormerForUniversalSegmentationOutput(class_queries_logits=cls, masks_queries_logits=masks)
    processor = Mask2FormerImageProcessor()
    ref = processor.post_process_panoptic_segmentation(outputs, threshold=0.8, label_ids_to_fuse={2})[0]
    (got,) = panoptic_segmentation(cls, masks, [(384, 384)], label_ids_to_fuse={2})
    assert torch.equal(got["segmentation"], ref["segmentation"])
    # transformers lists a fused segment once per query; ours once per segment.
    unique = list({s["id"]: s for s in ref["segments_info"]}.values())
    assert got["segments_info"] == unique
