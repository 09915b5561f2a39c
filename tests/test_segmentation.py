"""Segmentation end to end: each mode x model trains, eval/predict from a checkpoint, every data
source, target derivation, metrics, bad masks; learning tests on synthetic shapes (slow).

Loss parity, matcher and post-processing units: tests/unit/test_segmentation_loss.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_cfg
from headstart.data.errors import DataError
from headstart.data.segmentation import IGNORE_INDEX, SegmentationDataModule
from headstart.data.synthetic.seg_shapes import render_segmentation_scene
from headstart.eval import evaluate
from headstart.metrics.segmentation import SemanticIoU
from headstart.ops.seg_targets import instance_ground_truth, mask_targets, panoptic_pairs
from headstart.predict import predict
from headstart.train import train

SHORT = [
    "task=segmentation",
    "model.preset=tiny",
    "trainer.max_steps=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "data.batch_size=2",
    "data.synthetic_sizes={train: 8, val: 4, test: 4}",
]
M2F = ["model=mask2former", "task.loss.num_points=64"]
MODE_KEYS = {
    "semantic": ["miou", "pixel_acc"],
    "instance": ["map_mask", "miou"],
    "panoptic": ["pq", "sq", "rq", "miou"],
}


def _dm(**kwargs) -> SegmentationDataModule:
    dm = SegmentationDataModule(num_workers=0, **kwargs)
    dm.configure({"image_size": 64, "image_mean": (0.5,) * 3, "image_std": (0.5,) * 3})
    return dm


@pytest.fixture
def seg_folder(tmp_path: Path) -> Path:
    """An images/ + masks/ tree of synthetic scenes (class-index PNGs, 255 = ignore on a border strip)."""
    root = tmp_path / "segdata"
    for split, n in (("train", 8), ("val", 4)):
        for i in range(n):
            image, ids, classes = render_segmentation_scene(11 + len(split), i, 48, ("circle", "square", "triangle"))
            semantic = np.asarray([0, *classes], dtype=np.uint8)[ids]
            semantic[:2] = 255
            for sub, picture in (("images", image), ("masks", Image.fromarray(semantic, "L"))):
                (root / sub / split).mkdir(parents=True, exist_ok=True)
                picture.save(root / sub / split / f"{i:03d}.png")
    return root


FOLDER = ["data.source=folder", "data.classes=[background,circle,square,triangle]"]


# ---- each mode and model trains -------------------------------------------------------------------
@pytest.mark.parametrize(
    "model,mode", [("mask2former", "semantic"), ("mask2former", "instance"), ("mask2former", "panoptic"), ("segformer", "semantic")]
)
def test_each_mode_and_model_trains_and_writes_metrics(tmp_path: Path, model: str, mode: str) -> None:
    extra = M2F if model == "mask2former" else ["model=segformer"]
    results = train(make_cfg(tmp_path, *SHORT, *extra, f"task.mode={mode}"))
    written = json.loads((tmp_path / "metrics.json").read_text())
    for stage in ("val", "test"):
        for key in MODE_KEYS[mode]:
            assert f"{stage}/{key}" in written, f"{stage}/{key}"
    assert written["global_step"] == 2 and Path(written["best_checkpoint"]).is_file()
    assert 0.0 <= results["val/miou"] <= 1.0
    if model == "mask2former":
        assert "train/loss_dice_0" in (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]


def test_segformer_refuses_instance_mode(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="instance and panoptic need model=mask2former"):
        train(make_cfg(tmp_path, *SHORT, "model=segformer", "task.mode=instance"))


def test_monitor_follows_mode(tmp_path: Path) -> None:
    assert make_cfg(tmp_path, *SHORT, "task.mode=panoptic").task.monitor == "val/pq"
    cfg = make_cfg(tmp_path, *SHORT, "task.mode=instance")
    assert cfg.task.monitor == "val/map_mask" and cfg.model.checkpoint.endswith("coco-instance")


# ---- eval and predict from a checkpoint ------------------------------------------------------------
def test_segformer_eval_and_predict_semantic_pngs(tmp_path: Path, seg_folder: Path) -> None:
    cfg = make_cfg(tmp_path / "run", *SHORT, "model=segformer", *FOLDER, f"data.path={seg_folder}")
    results = train(cfg)
    ckpt = results["best_checkpoint"]
    metrics = evaluate(make_cfg(tmp_path / "eval", f"ckpt_path={ckpt}", "split=val", "trainer.limit_val_batches=1",
                                config_name="eval"))
    assert metrics["val/miou"] == pytest.approx(results["val/miou"], abs=1e-6)

    image = seg_folder / "images" / "val" / "001.png"
    predict(make_cfg(tmp_path / "pred", f"ckpt_path={ckpt}", f"inputs={image}", "predict.visualize=true", config_name="predict"))
    record = json.loads((tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()[0])
    assert record["input"] == str(image) and record["mode"] == "semantic"
    with Image.open(record["mask"]) as mask:
        assert mask.size == (48, 48) and np.asarray(mask).max() < 4  # original size, class ids
    assert set(record["classes"]) <= {"background", "circle", "square", "triangle"}
    assert abs(sum(record["classes"].values()) - 1) < 1e-4
    assert len(list((tmp_path / "pred" / "visualizations").glob("*.png"))) == 1


def test_mask2former_panoptic_predict_png_and_segments(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "run", *SHORT, *M2F, "task.mode=panoptic", "task.panoptic_score_threshold=0.0",
                   "task.overlap_threshold=0.0", "test=false")
    ckpt = train(cfg)["best_checkpoint"]
    image = tmp_path / "in.png"
    render_segmentation_scene(5, 0, 80, ("circle", "square", "triangle"))[0].save(image)
    predict(make_cfg(tmp_path / "pred", f"ckpt_path={ckpt}", f"inputs={image}", "predict.visualize=true", config_name="predict"))
    record = json.loads((tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()[0])
    with Image.open(record["mask"]) as mask:
        ids = np.asarray(mask)
    assert ids.shape == (80, 80)
    assert set(np.unique(ids).tolist()) - {0} == {s["id"] for s in record["segments"]}
    assert all(s["label"] in ("background", "circle", "square", "triangle") for s in record["segments"])
    assert len(list((tmp_path / "pred" / "visualizations").glob("*.png"))) == 1


# ---- data sources -----------------------------------------------------------------------------------
def test_synthetic_batches_carry_all_ground_truth() -> None:
    dm = _dm(synthetic_sizes={"train": 4, "val": 2}, batch_size=2)
    assert dm.info() == {"labels": ["background", "circle", "square", "triangle"], "thing_classes": [1, 2, 3],
                         "ignore_index": IGNORE_INDEX}
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert batch["pixel_values"].shape == (2, 3, 64, 64) and batch["seg_ids"].shape == (2, 64, 64)
    for b in range(2):
        lut = torch.cat([torch.tensor([IGNORE_INDEX]), batch["segment_labels"][b]])
        assert torch.equal(batch["semantic"][b], lut[batch["seg_ids"][b]])
        assert batch["target_sizes"][b] == (64, 64)
    train_batch = next(iter(dm.train_dataloader()))
    assert "orig_seg_ids" not in train_batch and train_batch["semantic"].shape == (2, 64, 64)


def test_folder_camvid_layout_with_ignore_and_ade_reduce_labels(tmp_path: Path) -> None:
    root = tmp_path / "camvid"
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(2):
            Image.new("RGB", (8, 6), (i * 50, 0, 0)).save(root / split / f"{i}.png")
            mask = np.full((6, 8), 11, dtype=np.uint8)
            mask[:3] = 2
            Image.fromarray(mask).save(root / f"{split}annot" / f"{i}.png")
    dm = _dm(source="folder", path=str(root), num_classes=11, ignore_index=11)
    example = dm._load().splits["val"].load(0)
    assert len(dm.info()["labels"]) == 11 and example.id_map[0, 0] == 3 and example.id_map[5, 0] == 0

    ade = _dm(source="folder", path=str(root), num_classes=11, ignore_index=None, reduce_labels=True)
    # reduce_labels: 2 -> class 1 (segment 2); 11 -> class 10
    example = ade._load().splits["train"].load(0)
    assert example.id_map[0, 0] == 2 and example.id_map[5, 0] == 11


def test_coco_panoptic_and_instances_sources(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "panoptic" / "masks").mkdir(parents=True)
    categories = [{"id": 1, "name": "person", "isthing": 1}, {"id": 7, "name": "sky", "isthing": 0}]
    images, panoptic, instances = [], [], []
    for i in range(3):
        Image.new("RGB", (10, 8)).save(tmp_path / "images" / f"{i}.jpg")
        pan = np.zeros((8, 10, 3), dtype=np.uint8)
        pan[:4] = (5, 0, 0)          # sky, id 5
        pan[5:, 2:6] = (1, 1, 0)     # person, id 257
        Image.fromarray(pan).save(tmp_path / "panoptic" / "masks" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.jpg", "height": 8, "width": 10})
        panoptic.append({"image_id": i, "file_name": f"{i}.png", "segments_info": [
            {"id": 5, "category_id": 7, "iscrowd": 0}, {"id": 257, "category_id": 1, "iscrowd": 0}]})
        instances.append({"id": 10 + i, "image_id": i, "category_id": 1, "iscrowd": 0,
                          "segmentation": [[2, 5, 6, 5, 6, 8, 2, 8]]})
    instances.append({"id": 99, "image_id": 0, "category_id": 1, "iscrowd": 1,
                      "segmentation": {"size": [8, 10], "counts": [0, 8, 72]}})
    common = {"images": images, "categories": categories}
    (tmp_path / "panoptic" / "annotations.json").write_text(json.dumps({**common, "annotations": panoptic}))
    (tmp_path / "annotations.json").write_text(json.dumps({**common, "annotations": instances}))

    dm = _dm(source="coco_panoptic", path=str(tmp_path), val_path="panoptic/annotations.json")
    assert dm.info()["labels"] == ["person", "sky"] and dm.info()["thing_classes"] == [0]
    example = dm._load().splits["train"].load(0)
    assert example.classes == [1, 0] and example.id_map[0, 0] == 1 and example.id_map[6, 3] == 2 and example.id_map[4, 0] == 0

    coco = _dm(source="coco", path=str(tmp_path), val_path="annotations.json")
    example = coco._load().splits["train"].load(0)
    assert example.classes == [0, 0] and example.crowd == [False, True]
    assert (example.id_map == 2).sum() == 8  # the crowd RLE: first column
    assert (example.id_map == 1).sum() > 0

    # no val JSON: validation is held out of the train JSON and still loads
    held_out = _dm(source="coco_panoptic", path=str(tmp_path), train_path="panoptic/annotations.json", val_fraction=0.5)
    splits = held_out._load().splits
    assert len(splits["val"]) >= 1 and splits["val"].load(0).classes


def test_yolo_seg_source(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(3):
        Image.new("RGB", (20, 10)).save(tmp_path / "images" / f"{i}.jpg")
        (tmp_path / "labels" / f"{i}.txt").write_text("3 0.1 0.1 0.5 0.1 0.5 0.9 0.1 0.9\n")
    (tmp_path / "data.yaml").write_text("names:\n  0: a\n  3: b\n")
    dm = _dm(source="yolo_seg", path=str(tmp_path), classes_file=str(tmp_path / "data.yaml"), val_fraction=0.34)
    assert dm.info()["labels"] == ["a", "b"]
    example = dm._load().splits["train"].load(0)
    assert example.classes == [1] and 60 <= (example.id_map == 1).sum() <= 90
    for i in range(3):
        (tmp_path / "labels" / f"{i}.txt").write_text("3 0.1 0.1 0.5 0.2 0.3 0.3\n3 0.1 0.1 0.5\n")
    with pytest.raises(DataError, match=r"\d\.txt:2: a polygon needs"):
        dm._load().splits["train"].load(0)


# ---- bad masks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["size", "label", "unreadable"])
def test_bad_mask_names_the_file(seg_folder: Path, bad: str) -> None:
    mask = seg_folder / "masks" / "train" / "003.png"
    if bad == "size":
        Image.new("L", (10, 10)).save(mask)
        message = r"003\.png: mask is 10x10 but its image is 48x48"
    elif bad == "label":
        Image.fromarray(np.full((48, 48), 7, dtype=np.uint8)).save(mask)
        message = r"003\.png: label values \[7\] are not in the class set"
    else:
        mask.write_bytes(b"\x89PNG\r\n\x1a\n not a png")
        message = r"003\.png"
    dm = _dm(source="folder", path=str(seg_folder), classes=["background", "circle", "square", "triangle"])
    dm.setup("fit")
    with pytest.raises(DataError, match=message):
        dm.train_set[3]


def test_bad_mask_is_skipped_and_counted(tmp_path: Path, seg_folder: Path) -> None:
    Image.new("L", (10, 10)).save(seg_folder / "masks" / "train" / "003.png")
    results = train(make_cfg(tmp_path, *SHORT, "model=segformer", *FOLDER, f"data.path={seg_folder}",
                             "data.on_error=skip", "trainer.max_steps=4", "test=false"))
    assert results["data_skipped"] == 1


# ---- targets and metrics ------------------------------------------------------------------------------
def test_mask_targets_per_mode() -> None:
    ids = torch.tensor([[1, 1, 2, 2], [1, 3, 3, 4], [0, 0, 4, 4]])
    labels = torch.tensor([0, 1, 1, 2])  # segment 1 stuff class 0; segments 2, 3 class 1; segment 4 class 2
    crowd = torch.tensor([False, False, False, True])
    things = torch.tensor([1, 2])
    semantic = mask_targets(ids, labels, crowd, "semantic", things)
    assert semantic["class_labels"].tolist() == [0, 1] and semantic["masks"][1].sum() == 4
    instance = mask_targets(ids, labels, crowd, "instance", things)
    assert instance["class_labels"].tolist() == [1, 1] and instance["masks"].sum(dim=(1, 2)).tolist() == [2, 2]
    panoptic = mask_targets(ids, labels, crowd, "panoptic", things)
    assert panoptic["class_labels"].tolist() == [0, 1, 1]
    gt = instance_ground_truth(ids, labels, crowd, things)
    assert gt["labels"].tolist() == [1, 1, 2] and gt["iscrowd"].tolist() == [0, 0, 1]
    pairs = panoptic_pairs(ids, labels, void_class=9)
    assert pairs[2, 0].tolist() == [9, 0] and pairs[1, 3].tolist() == [2, 4]


def test_semantic_iou_ignores_and_averages_present_classes() -> None:
    metric = SemanticIoU(num_classes=4, ignore_index=-100)
    target = torch.tensor([0, 0, 1, 1, -100, 2])
    preds = torch.tensor([0, 1, 1, 1, 3, 2])
    metric.update(preds, target)
    out = metric.compute()
    # class 0: 1/2, class 1: 2/3, class 2: 1, class 3 absent (ignored pixel does not count)
    assert out["miou"].item() == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert out["pixel_acc"].item() == pytest.approx(4 / 5)
    assert torch.isnan(out["iou_per_class"][3])


# ---- learning (slow) ---------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("model,threshold", [("segformer", 0.6), ("mask2former", 0.5)])
def test_tiny_model_learns_synthetic_shapes(tmp_path: Path, model: str, threshold: float) -> None:
    cfg = make_cfg(tmp_path, f"experiment=synthetic/segmentation_{model}")
    results = train(cfg)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["val/miou"] == pytest.approx(results["val/miou"])
    assert written["val/miou"] >= threshold, written


def test_media_are_wandb_images_with_predicted_and_true_masks(tmp_path: Path) -> None:
    from headstart.run.build import build

    built = build(make_cfg(tmp_path, *SHORT, "model=segformer"))
    built.datamodule.setup("validate")
    batch = next(iter(built.datamodule.val_dataloader()))
    with torch.no_grad():
        maps = built.task.semantic_maps(built.task(batch["pixel_values"]), [(64, 64)] * 2)
    media = built.task.media(batch, {"pred_maps": torch.stack(maps)}, max_items=2)
    panels = media["val/segmentation"]
    assert len(panels) == 2
    masks = panels[0]._masks
    assert set(masks) == {"predictions", "ground_truth"}
    assert masks["ground_truth"]._val["class_labels"][4] == "ignore"
