"""DETR loss pieces: box ops, matcher, set criterion (parity with transformers), head, post-processing.

transformers and torchvision are imported inside the tests that use them, so that the DDP
test's spawned workers, which re-import this module, start in about a second.
"""

from __future__ import annotations

import os
import tempfile
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from headstart.heads.detection import DetectionHead
from headstart.losses.matcher import HungarianMatcher, indices_from_assignment
from headstart.losses.set_criterion import SetCriterion
from headstart.ops.boxes import (
    box_area,
    box_iou,
    cxcywh_to_xyxy,
    generalized_box_iou,
    generalized_box_iou_paired,
    xyxy_to_cxcywh,
)
from headstart.ops.detection_postprocess import post_process_detections

NUM_CLASSES = 7


def random_batch(seed: int, sizes: list[int], layers: int = 3, queries: int = 12, classes: int = NUM_CLASSES):
    """logits [L, B, Q, C+1], boxes [L, B, Q, 4] (sigmoid cxcywh) and B target dicts."""
    g = torch.Generator().manual_seed(seed)
    batch = len(sizes)
    logits = torch.randn(layers, batch, queries, classes + 1, generator=g)
    boxes = torch.rand(layers, batch, queries, 4, generator=g) * 0.6 + 0.05
    targets = [
        {
            "class_labels": torch.randint(0, classes, (n,), generator=g),
            "boxes": torch.cat([torch.rand(n, 2, generator=g) * 0.6 + 0.2, torch.rand(n, 2, generator=g) * 0.3 + 0.05], 1),
        }
        for n in sizes
    ]
    return logits, boxes, targets


# ---------------------------------------------------------------- box ops


def test_box_conversions_hand_computed() -> None:
    cxcywh = torch.tensor([[0.5, 0.5, 0.2, 0.4], [2.0, 3.0, 4.0, 2.0]])
    xyxy = torch.tensor([[0.4, 0.3, 0.6, 0.7], [0.0, 2.0, 4.0, 4.0]])
    torch.testing.assert_close(cxcywh_to_xyxy(cxcywh), xyxy)
    torch.testing.assert_close(xyxy_to_cxcywh(xyxy), cxcywh)
    torch.testing.assert_close(box_area(xyxy), torch.tensor([0.08, 8.0]))
    # leading batch dims pass through
    assert cxcywh_to_xyxy(torch.rand(2, 3, 5, 4)).shape == (2, 3, 5, 4)


def test_iou_and_giou_hand_computed() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [4.0, 0.0, 6.0, 2.0]])
    iou, union = box_iou(a, b)
    # overlap 1, union 7; identical; disjoint
    torch.testing.assert_close(iou, torch.tensor([[1 / 7, 1.0, 0.0]]))
    torch.testing.assert_close(union, torch.tensor([[7.0, 4.0, 8.0]]))
    # hulls: 3x3=9 -> 1/7 - 2/9; 4 -> 1; 6x2=12 -> 0 - 4/12
    expected = torch.tensor([[1 / 7 - 2 / 9, 1.0, -1 / 3]])
    torch.testing.assert_close(generalized_box_iou(a, b), expected)
    torch.testing.assert_close(generalized_box_iou_paired(a.expand(3, 4), b), expected[0])


def test_giou_matches_torchvision_batched() -> None:
    import torchvision.ops as tvops

    g = torch.Generator().manual_seed(0)
    a = cxcywh_to_xyxy(torch.rand(2, 5, 4, generator=g) * 0.5 + 0.1)
    b = cxcywh_to_xyxy(torch.rand(2, 6, 4, generator=g) * 0.5 + 0.1)
    ours = generalized_box_iou(a, b)
    assert ours.shape == (2, 5, 6)
    for i in range(2):
        torch.testing.assert_close(ours[i], tvops.generalized_box_iou(a[i], b[i]))
        torch.testing.assert_close(box_iou(a, b)[0][i], tvops.box_iou(a[i], b[i]))
    torch.testing.assert_close(generalized_box_iou_paired(a[:, :5], b[:, :5]), torch.diagonal(ours[:, :, :5], dim1=-2, dim2=-1))


# ---------------------------------------------------------------- matcher


def assert_same_matches(ours, ref) -> None:
    assert len(ours) == len(ref)
    for (q, t), (rq, rt) in zip(ours, ref):
        assert torch.equal(q, rq) and torch.equal(t, rt), (q, t, rq, rt)


def test_matcher_equals_transformers_and_per_image() -> None:
    from transformers.loss.loss_for_object_detection import HungarianMatcher as HFMatcher

    logits, boxes, targets = random_batch(1, [3, 0, 5, 12])
    matcher = HungarianMatcher(cost_class=1.0, cost_bbox=5.0, cost_giou=2.0)
    ref = HFMatcher(class_cost=1.0, bbox_cost=5.0, giou_cost=2.0)
    batched = matcher(logits[-1], boxes[-1], targets)
    assert_same_matches(batched, ref({"logits": logits[-1], "pred_boxes": boxes[-1]}, targets))
    for b, target in enumerate(targets):
        assert_same_matches([batched[b]], matcher(logits[-1, b : b + 1], boxes[-1, b : b + 1], [target]))
    # all layers at once == layer by layer
    for layer, layer_matches in enumerate(matcher.match_layers(logits, boxes, targets)):
        assert_same_matches(layer_matches, matcher(logits[layer], boxes[layer], targets))
    assert [len(q) for q, _ in batched] == [3, 0, 5, 12]


def test_matcher_no_targets_anywhere() -> None:
    logits, boxes, targets = random_batch(2, [0, 0])
    for q, t in HungarianMatcher()(logits[-1], boxes[-1], targets):
        assert q.numel() == 0 and t.numel() == 0 and q.dtype == torch.int64


def test_matcher_more_targets_than_queries_raises() -> None:
    logits, boxes, targets = random_batch(3, [2, 13], queries=12)
    with pytest.raises(ValueError, match="image 1 has 13 target boxes but the model has only 12 queries"):
        HungarianMatcher()(logits[-1], boxes[-1], targets)


def test_matcher_survives_nan_predictions() -> None:
    logits, boxes, targets = random_batch(4, [2, 3])
    boxes[-1, 0, 0] = float("nan")
    matches = HungarianMatcher()(logits[-1], boxes[-1], targets)
    assert 0 not in matches[0][0].tolist()  # the NaN query is matched last, i.e. not at all here


def test_indices_from_dense_assignment() -> None:
    # the dense (GPU solver) format: per query its target column or -1; columns >= size are padding
    assignment = torch.tensor([[-1, 1, 0, 2], [2, -1, 0, -1]])
    (q0, t0), (q1, t1) = indices_from_assignment(assignment, [3, 1])
    assert q0.tolist() == [1, 2, 3] and t0.tolist() == [1, 0, 2]
    assert q1.tolist() == [2] and t1.tolist() == [0]


# ---------------------------------------------------------------- criterion


def reference_loss(logits, boxes, targets, eos_coef: float, aux: bool):
    from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss

    config = SimpleNamespace(
        class_cost=1.0, bbox_cost=5.0, giou_cost=2.0, num_labels=NUM_CLASSES, eos_coefficient=eos_coef,
        auxiliary_loss=aux, bbox_loss_coefficient=5.0, giou_loss_coefficient=2.0, decoder_layers=logits.shape[0],
    )
    return ForObjectDetectionLoss(
        logits[-1], targets, logits.device, boxes[-1], config, outputs_class=logits, outputs_coord=boxes
    )


def make_criterion(eos_coef: float = 0.1, aux: bool = True) -> SetCriterion:
    matcher = HungarianMatcher(cost_class=1.0, cost_bbox=5.0, cost_giou=2.0)
    return SetCriterion(NUM_CLASSES, matcher, eos_coef=eos_coef, weight_ce=1.0, weight_bbox=5.0, weight_giou=2.0, aux_loss=aux)


@pytest.mark.parametrize("sizes", [[3, 0, 5, 12], [1, 4]])
def test_criterion_matches_transformers_every_term(sizes: list[int]) -> None:
    logits, boxes, targets = random_batch(5, sizes, layers=4)
    ref_total, ref_terms, _ = reference_loss(logits, boxes, targets, eos_coef=0.2, aux=True)
    ours = make_criterion(eos_coef=0.2)(logits[-1], boxes[-1], targets, aux_outputs=list(zip(logits[:-1], boxes[:-1])))
    assert set(ours) == set(ref_terms) | {"loss"}
    assert "loss_giou_2" in ours and "cardinality_error_0" in ours
    for name, value in ref_terms.items():
        torch.testing.assert_close(ours[name], torch.as_tensor(value, dtype=torch.float32), rtol=1e-5, atol=1e-5, msg=name)
    torch.testing.assert_close(ours["loss"], ref_total, rtol=1e-5, atol=1e-5)


def test_criterion_gradients_match_transformers() -> None:
    logits, boxes, targets = random_batch(6, [2, 6, 1], layers=2)
    logits_a, boxes_a = logits.clone().requires_grad_(), boxes.clone().requires_grad_()
    reference_loss(logits_a, boxes_a, targets, eos_coef=0.1, aux=True)[0].backward()
    logits_b, boxes_b = logits.clone().requires_grad_(), boxes.clone().requires_grad_()
    make_criterion()(logits_b[-1], boxes_b[-1], targets, aux_outputs=[(logits_b[0], boxes_b[0])])["loss"].backward()
    torch.testing.assert_close(logits_b.grad, logits_a.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(boxes_b.grad, boxes_a.grad, rtol=1e-5, atol=1e-6)


def test_criterion_without_aux_and_without_targets() -> None:
    logits, boxes, targets = random_batch(7, [0, 0], layers=2)
    ref_total, ref_terms, _ = reference_loss(logits[-1:], boxes[-1:], targets, eos_coef=0.1, aux=False)
    ours = make_criterion(aux=False)(logits[-1], boxes[-1], targets, aux_outputs=[(logits[0], boxes[0])])
    assert set(ours) == {"loss_ce", "loss_bbox", "loss_giou", "cardinality_error", "loss"}
    assert ours["loss_bbox"] == 0 and ours["loss_giou"] == 0
    torch.testing.assert_close(ours["loss"], ref_total, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours["loss_ce"], ref_terms["loss_ce"], rtol=1e-5, atol=1e-5)


def _ddp_worker(rank: int, world: int, init_file: str, result_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    logits, boxes, targets = random_batch(8 + rank, [3] if rank == 0 else [7, 0])
    terms = make_criterion(aux=False)(logits[-1], boxes[-1], targets)
    # rank-local sum of matched L1 distances, to compare with the normalised term
    (queries, tgt), = [m for m in HungarianMatcher()(logits[-1, :1], boxes[-1, :1], targets[:1])]
    if rank == 0:
        l1_sum = (boxes[-1, 0, queries] - targets[0]["boxes"][tgt]).abs().sum()
        torch.save({"loss_bbox": terms["loss_bbox"], "l1_sum": l1_sum}, result_file)
    dist.destroy_process_group()


def test_criterion_normalises_by_boxes_averaged_over_ranks() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        init_file, result_file = os.path.join(tmp, "init"), os.path.join(tmp, "out.pt")
        # spawn, not fork: forking after torch has run its thread pools deadlocks the children
        mp.spawn(_ddp_worker, args=(2, init_file, result_file), nprocs=2, join=True)
        out = torch.load(result_file)
    # rank 0 has 3 boxes, rank 1 has 7: both normalise by (3 + 7) / 2 = 5, not by their own count
    torch.testing.assert_close(out["loss_bbox"], out["l1_sum"] / 5)


# ---------------------------------------------------------------- head


def test_head_shapes_and_transformers_layout() -> None:
    from transformers.models.detr.modeling_detr import DetrMLPPredictionHead

    head = DetectionHead(in_features=16, num_classes=NUM_CLASSES)
    states = torch.randn(3, 2, 5, 16)
    logits, boxes = head(states)
    assert logits.shape == (3, 2, 5, NUM_CLASSES + 1) and boxes.shape == (3, 2, 5, 4)
    assert (boxes > 0).all() and (boxes < 1).all()
    last_logits, last_boxes = head(states[-1])
    assert last_logits.shape == (1, 2, 5, NUM_CLASSES + 1)
    torch.testing.assert_close(last_boxes[0], boxes[-1])
    # same computation as transformers' DETR box predictor with copied weights
    ref = DetrMLPPredictionHead(16, 16, 4, 3)
    for ref_layer, layer in zip(ref.layers, [head.box_mlp[0], head.box_mlp[2], head.box_mlp[4]]):
        ref_layer.load_state_dict(layer.state_dict())
    torch.testing.assert_close(boxes, ref(states).sigmoid())
    with pytest.raises(ValueError, match="decoder_states"):
        head(torch.randn(2, 16))


# ---------------------------------------------------------------- post-processing


def test_post_process_hand_made() -> None:
    big = 10.0
    logits = torch.full((1, 3, 4), -big)  # 3 real classes + no-object
    logits[0, 0, 1] = big  # query 0: class 1, confident
    logits[0, 1, 3] = big  # query 1: no-object -> dropped although class scores tie
    logits[0, 2, [0, 2, 3]] = torch.tensor([-0.5, 0.0, 0.0])  # query 2: class 2, p = 1 / 2.607 = 0.38
    boxes = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.25, 0.5, 0.5, 1.0]]])
    out = post_process_detections(logits, boxes, image_sizes=[(100, 200)], threshold=0.3)
    assert len(out) == 1
    assert out[0]["labels"].tolist() == [1, 2]
    torch.testing.assert_close(out[0]["boxes"], torch.tensor([[50.0, 25.0, 150.0, 75.0], [0.0, 0.0, 100.0, 100.0]]))
    s2 = torch.softmax(logits[0, 2], -1)[2]
    torch.testing.assert_close(out[0]["scores"], torch.stack([torch.softmax(logits[0, 0], -1)[1], s2]))
    # top_k keeps the k best, best first
    top = post_process_detections(logits, boxes, image_sizes=torch.tensor([[100, 200]]), threshold=0.0, top_k=1)
    assert top[0]["labels"].tolist() == [1] and top[0]["boxes"].shape == (1, 4)
    # without sizes boxes stay normalised
    torch.testing.assert_close(post_process_detections(logits, boxes, threshold=0.3)[0]["boxes"][0], torch.tensor([0.25, 0.25, 0.75, 0.75]))


def test_post_process_matches_transformers() -> None:
    from transformers import DetrImageProcessor

    logits, boxes, _ = random_batch(9, [0, 0], layers=1, queries=20)
    sizes = [(480, 640), (300, 200)]
    ref = DetrImageProcessor().post_process_object_detection(
        SimpleNamespace(logits=logits[0], pred_boxes=boxes[0]), threshold=0.2, target_sizes=sizes
    )
    ours = post_process_detections(logits[0], boxes[0], image_sizes=sizes, threshold=0.2)
    for r, o in zip(ref, ours):
        assert r["scores"].numel() > 0
        for key in ("scores", "labels", "boxes"):
            torch.testing.assert_close(o[key], r[key])


# ---------------------------------------------------------------- CUDA


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_criterion_on_cuda_equals_cpu() -> None:
    """Runs the batched GPU solver when torch_linear_assignment is installed, else scipy from CUDA costs."""
    logits, boxes, targets = random_batch(10, [3, 0, 5, 12, 7, 1], layers=4)
    aux = list(zip(logits[:-1], boxes[:-1]))
    cpu = make_criterion()(logits[-1], boxes[-1], targets, aux_outputs=aux)
    to_cuda = [{k: v.cuda() for k, v in t.items()} for t in targets]
    matcher = HungarianMatcher(cost_class=1.0, cost_bbox=5.0, cost_giou=2.0)
    for layer in range(logits.shape[0]):
        assert_same_matches(
            matcher(logits[layer].cuda(), boxes[layer].cuda(), to_cuda), matcher(logits[layer], boxes[layer], targets)
        )
    gpu = make_criterion().cuda()(logits[-1].cuda(), boxes[-1].cuda(), to_cuda, aux_outputs=[(a.cuda(), b.cuda()) for a, b in aux])
    assert set(gpu) == set(cpu)
    for name in cpu:
        torch.testing.assert_close(gpu[name].cpu(), cpu[name], rtol=1e-5, atol=1e-5, msg=name)
