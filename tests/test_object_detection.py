"""Object detection end to end: DETR backbone, data sources, bad annotations, train/eval/predict, learning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_cfg
from headstart.backbones.detr import DetrBackbone
from headstart.data.detection import ObjectDetectionDataModule
from headstart.data.errors import DataError
from headstart.data.synthetic.det_shapes import render_detection_scene
from headstart.eval import evaluate
from headstart.predict import predict
from headstart.tasks.object_detection import per_class_ap, pixel_targets
from headstart.train import train

CLASSES = ["circle", "square", "triangle"]
SHORT = [
    "task=object_detection",
    "model.preset=tiny",
    "trainer.max_steps=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "data.batch_size=4",
    "data.synthetic_sizes={train: 12, val: 8, test: 8}",
]
TINY = {
    "model_type": "detr", "use_timm_backbone": False, "use_pretrained_backbone": False,
    "backbone_config": {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [16, 32], "depths": [1, 1],
                        "layer_type": "basic", "out_features": ["stage2"]},
    "d_model": 32, "encoder_layers": 1, "decoder_layers": 2, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
    "encoder_ffn_dim": 32, "decoder_ffn_dim": 32, "num_queries": 6, "image_size": 64, "max_size": 96,
}
SPEC = {"image_size": 64, "max_size": 96, "image_mean": (0.5,) * 3, "image_std": (0.5,) * 3}


# ---- fixtures: the same synthetic scenes written as YOLO, COCO and VOC ------------------------------
def scenes(n: int, seed: int = 3) -> list[tuple]:
    return [render_detection_scene(seed, i, 64, tuple(CLASSES), max_objects=3) for i in range(n)]


def write_yolo(root: Path, n: int = 12) -> Path:
    for i, (image, boxes, labels) in enumerate(scenes(n)):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        image.save(root / "images" / f"{i:03d}.png")
        lines = [
            f"{c} {(b[0] + b[2]) / 128} {(b[1] + b[3]) / 128} {(b[2] - b[0]) / 64} {(b[3] - b[1]) / 64}" for b, c in zip(boxes, labels)
        ]
        (root / "labels" / f"{i:03d}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text("names:\n" + "".join(f"  {k}: {name}\n" for k, name in enumerate(CLASSES)))
    return root


def write_coco(root: Path, n: int = 6) -> Path:
    images, anns = [], []
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i, (image, boxes, labels) in enumerate(scenes(n)):
        image.save(root / "images" / f"{i:03d}.png")
        images.append({"id": i + 1, "file_name": f"{i:03d}.png", "height": 64, "width": 64})
        for b, c in zip(boxes, labels):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": 10 + c,
                    "iscrowd": 0,
                    "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                }
            )
    cats = [{"id": 10 + k, "name": name} for k, name in enumerate(CLASSES)]
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


def write_voc(root: Path, n: int = 6) -> Path:
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    for i, (image, boxes, labels) in enumerate(scenes(n)):
        image.save(root / "JPEGImages" / f"{i:03d}.png")
        objects = "".join(
            f"<object><name>{CLASSES[c]}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
            f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for b, c in zip(boxes, labels)
        )
        (root / "Annotations" / f"{i:03d}.xml").write_text(f"<annotation><filename>{i:03d}.png</filename>{objects}</annotation>")
    return root


def datamodule(**kwargs: object) -> ObjectDetectionDataModule:
    dm = ObjectDetectionDataModule(**{"num_workers": 0, "batch_size": 4, "val_fraction": 0.25, **kwargs})  # type: ignore[arg-type]
    dm.configure(SPEC)
    return dm


def all_examples(dm: ObjectDetectionDataModule) -> list:
    splits = dm._load().splits
    return [splits[s].load(i) for s in ("train", "val") for i in range(len(splits[s]))]


# ---- data ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["yolo", "coco", "voc"])
def test_file_sources_read_the_same_boxes(tmp_path: Path, fmt: str) -> None:
    root = {"yolo": write_yolo, "coco": write_coco, "voc": write_voc}[fmt](tmp_path / fmt, 6)
    dm = datamodule(source=fmt, path=str(root), **({"classes": CLASSES} if fmt == "voc" else {}))
    assert dm.info()["labels"] == CLASSES
    truth = {tuple(np.asarray(image).reshape(-1)[:32]): (boxes, labels) for image, boxes, labels in scenes(6)}
    for example in all_examples(dm):
        boxes, labels = truth[tuple(np.asarray(example.image).reshape(-1)[:32])]
        assert example.labels == labels
        np.testing.assert_allclose(example.boxes, boxes, atol=1e-3)


def test_hf_source_reads_an_objects_column(tmp_path: Path) -> None:
    import datasets

    rows = scenes(6)
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "objects": datasets.Sequence(
                {"bbox": datasets.Sequence(datasets.Value("float32"), length=4), "category": datasets.ClassLabel(names=CLASSES)}
            ),
        }
    )
    table = datasets.Dataset.from_dict(
        {
            "image": [image for image, _, _ in rows],
            "objects": [
                {"bbox": [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in boxes.tolist()], "category": labels} for _, boxes, labels in rows
            ],
        },
        features=features,
    )
    datasets.DatasetDict({"train": table}).save_to_disk(str(tmp_path / "hf"))
    dm = datamodule(source="hf", hf_name=str(tmp_path / "hf"), hf_splits={"train": "train", "val": None, "test": None})
    assert dm.info()["labels"] == CLASSES
    assert sum(len(e.labels) for e in all_examples(dm)) == sum(len(labels) for _, _, labels in rows)


def test_batches_pad_images_carry_masks_and_normalised_boxes(tmp_path: Path) -> None:
    dm = datamodule(source="synthetic", synthetic_sizes={"train": 8, "val": 4}, crop=1.0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    pixels, mask = batch["pixel_values"], batch["pixel_mask"]
    assert pixels.shape[0] == mask.shape[0] == 4 and pixels.shape[-2:] == mask.shape[-2:]
    for b, (h, w) in enumerate(batch["sizes"].tolist()):
        assert mask[b, :h, :w].all() and mask[b].sum() == h * w and (pixels[b, :, h:, :] == 0).all()
        boxes = batch["targets"][b]["boxes"]
        assert ((boxes >= 0) & (boxes <= 1)).all() and (boxes[:, 2:] > 0).all()
    val = next(iter(dm.val_dataloader()))
    assert val["sizes"].tolist() == [[64, 64]] * 4 and val["boxes_dropped"].item() == 0


def test_degenerate_and_out_of_image_boxes_are_clipped_or_dropped_and_counted(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "coco", 2)
    data = json.loads((root / "annotations.json").read_text())
    data["annotations"] += [
        {"id": 100, "image_id": 1, "category_id": 10, "bbox": [10.0, 10.0, 0.0, 5.0]},  # zero width: dropped
        {"id": 101, "image_id": 1, "category_id": 11, "bbox": [70.0, 10.0, 5.0, 5.0]},  # outside: dropped
        {"id": 102, "image_id": 1, "category_id": 12, "bbox": [50.0, 50.0, 40.0, 40.0]},  # clipped to 64
    ]
    (root / "annotations.json").write_text(json.dumps(data))
    dm = datamodule(source="coco", path=str(root), val_fraction=0.5, seed=0)
    dm.setup("fit")
    samples = [dm.val_set[0], dm.train_set[0]]
    sample = next(s for s in samples if s["paths"].endswith("000.png"))
    assert sample["boxes_dropped"] == 2
    assert (sample["target"]["boxes"] <= 1).all()


def yolo_with(tmp_path: Path, line: str) -> Path:
    root = write_yolo(tmp_path / "yolo", 8)
    (root / "labels" / "003.txt").write_text(line + "\n")
    return root


@pytest.mark.parametrize(
    "line, message",
    [
        ("0 0.5 0.5 -0.2 0.3", r"003\.txt: line 1: box has negative size"),
        ("7 0.5 0.5 0.2 0.3", r"003\.txt: line 1: class 7 is out of range \(the data has 3 classes\)"),
        ("0 0.5 0.5", r"003\.txt:1: expected 'class cx cy w h'"),
    ],
)
def test_bad_yolo_annotations_name_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    dm = datamodule(source="yolo", path=str(yolo_with(tmp_path, line)), val_fraction=0.25)
    with pytest.raises(DataError, match=message):
        all_examples(dm)


def test_bad_coco_and_voc_annotations_name_the_file(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "coco", 3)
    data = json.loads((root / "annotations.json").read_text())
    data["annotations"][0]["category_id"] = 99
    data["images"][1]["file_name"] = "missing.png"
    (root / "annotations.json").write_text(json.dumps(data))
    dm = datamodule(source="coco", path=str(root), val_fraction=0.34)
    splits = dm._load().splits
    examples = [(s, i) for s in ("train", "val") for i in range(len(splits[s]))]
    errors = []
    for s, i in examples:
        dm.setup("fit")
        dataset = dm.train_set if s == "train" else dm.val_set
        try:
            dataset[i]
        except DataError as err:
            errors.append(str(err))
    assert any("annotations.json (image 000.png): annotation 1: category 99" in e for e in errors), errors
    assert any("missing.png" in e and "No such file" in e for e in errors), errors

    voc = write_voc(tmp_path / "voc", 3)
    xml = voc / "Annotations" / "001.xml"
    xml.write_text(xml.read_text().replace("<xmax>", "<xmax>-", 1))
    with pytest.raises(DataError, match=r"001\.xml: object 0 \(\w+\): box has negative size"):
        all_examples(datamodule(source="voc", path=str(voc), classes=CLASSES, val_fraction=0.34))


def test_missing_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere: data folder not found"):
        datamodule(source="yolo", path=str(tmp_path / "nowhere")).info()


# ---- backbone --------------------------------------------------------------------------------------
def test_tiny_detr_gives_every_decoder_layer_and_respects_the_pixel_mask() -> None:
    backbone = DetrBackbone(preset="tiny", presets={"tiny": TINY}, freeze_cnn_stages=0)
    pixels, mask = torch.randn(2, 3, 64, 80), torch.ones(2, 64, 80, dtype=torch.long)
    states = backbone(pixels, mask).query_states
    assert states.shape == (2, 2, 6, 32)  # [L, B, Q, D]
    # padding (masked out) does not change an image's queries
    padded = torch.cat([pixels, torch.randn(2, 3, 64, 32)], dim=-1)
    padded_mask = torch.cat([mask, torch.zeros(2, 64, 32, dtype=torch.long)], dim=-1)
    backbone.eval()
    assert backbone.data_spec()["image_size"] == 64 and backbone.data_spec()["max_size"] == 96
    assert backbone(padded, padded_mask).query_states.shape == states.shape


def test_cnn_freezing_and_its_own_learning_rate(tmp_path: Path) -> None:
    detr = DetrBackbone(preset="tiny", presets={"tiny": TINY}, freeze_cnn_stages=1, cnn_lr=1e-5)
    trainable = {n for n, p in detr.cnn.named_parameters() if p.requires_grad}
    assert trainable and all(".stages.1." in n for n in trainable)  # stem and first stage frozen (DETR)
    assert not any(p.requires_grad for p in DetrBackbone(preset="tiny", presets={"tiny": TINY}, freeze_cnn=True).cnn.parameters())

    built_cfg = make_cfg(tmp_path, *SHORT, "model.cnn_lr=1e-5", "optim.lr=1e-4", "model.freeze_cnn_stages=0")
    from headstart.run.build import build

    task = build(built_cfg).task
    task.trainer = type("T", (), {"max_steps": 10})()  # configure_optimizers reads the schedule length only
    optimizer = task.configure_optimizers()["optimizer"]
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    cnn_params = {id(p) for p in task.backbone.cnn.parameters()}
    for group in optimizer.param_groups:
        in_cnn = {id(p) in cnn_params for p in group["params"]}
        assert in_cnn == {group["name"].startswith("cnn")}
    assert lrs["cnn"] == 1e-5 and lrs["backbone"] == 1e-4 and lrs["head"] == 1e-4


def test_detection_checkpoint_head_is_reused_when_classes_match(tmp_path: Path) -> None:
    from transformers import AutoConfig, DetrForObjectDetection

    from headstart.heads.detection import DetectionHead

    names = {0: "dog", 1: "circle", 2: "cat", 3: "triangle"}
    hf = DetrForObjectDetection(AutoConfig.for_model(**TINY, id2label=names, label2id={v: k for k, v in names.items()}))
    hf.save_pretrained(tmp_path / "ckpt")
    backbone = DetrBackbone(checkpoint=str(tmp_path / "ckpt"))
    head = DetectionHead(32, 2)
    head.load_state_dict(backbone.head_weights(["triangle", "circle"]), strict=True)
    hf.eval()
    backbone.eval()
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = hf(pixel_values=pixels)
        logits, boxes = head(backbone(pixels).query_states)
    torch.testing.assert_close(boxes[-1], ref.pred_boxes, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[-1], ref.logits[..., [3, 1, 4]], atol=1e-5, rtol=1e-5)
    unmatched = backbone.head_weights(["zebra"])
    assert "class_head.weight" not in unmatched and "box_mlp.4.weight" in unmatched


def test_metric_helpers() -> None:
    targets = [{"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.5, 0.25]])}]
    out = pixel_targets(targets, torch.tensor([[100, 200]]))
    torch.testing.assert_close(out[0]["boxes"], torch.tensor([[50.0, 37.5, 150.0, 62.5]]))
    results = {"map_per_class": torch.tensor([0.5, -1.0]), "classes": torch.tensor([2, 0])}
    assert per_class_ap(results, CLASSES) == {"triangle": 0.5}


# ---- end to end ------------------------------------------------------------------------------------
def test_trains_writes_metrics_and_logs_media(tmp_path: Path) -> None:
    results = train(make_cfg(tmp_path, *SHORT, "logger=default"))
    written = json.loads((tmp_path / "metrics.json").read_text())
    for key in (
        "val/map",
        "val/map_50",
        "val/map_75",
        "val/map_small",
        "val/map_medium",
        "val/map_large",
        "test/map",
        "test/map_50",
        "train/loss_ce",
        "val/loss",
        "val/loss_giou_0",
        "best_checkpoint",
        "fit_seconds",
        "train_samples_per_second",
        "peak_memory_mb",
    ):
        assert key in written or key.startswith("train/"), key
    assert written["val/map"] == pytest.approx(results["val/map"]) and written["global_step"] == 3
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs and list(runs[0].rglob("media/images/**/*.png")), "validation images with boxes were not logged"
    summary = runs[0] / "files" / "wandb-summary.json"
    assert not summary.exists() or "val/map" in summary.read_text()


def test_eval_and_predict_from_checkpoint(tmp_path: Path) -> None:
    root = write_yolo(tmp_path / "yolo", 12)
    results = train(make_cfg(tmp_path / "run", *SHORT, "data.source=yolo", f"data.path={root}", "data.val_fraction=0.25", "test=false"))
    ckpt = results["best_checkpoint"]
    metrics = evaluate(make_cfg(tmp_path / "eval", f"ckpt_path={ckpt}", "split=val", config_name="eval"))
    assert metrics["val/map"] == pytest.approx(results["val/map"], abs=1e-6)

    image = root / "images" / "000.png"
    records = predict(
        make_cfg(
            tmp_path / "pred",
            f"ckpt_path={ckpt}",
            f"inputs={image}",
            "predict.visualize=true",
            "++task.predict_threshold=0.0",
            "++task.predict_top_k=3",
            config_name="predict",
        )
    )
    record = json.loads((tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()[0])
    assert record == records[0] and record["input"] == str(image)
    assert len(record["boxes"]) == len(record["labels"]) == len(record["scores"]) == 3
    assert set(record["labels"]) <= set(CLASSES) and record["scores"] == sorted(record["scores"], reverse=True)
    assert all(0 <= v <= 64 for box in record["boxes"] for v in box)
    assert len(list((tmp_path / "pred" / "visualizations").glob("*.png"))) == 1


def test_bad_annotation_stops_the_run_or_is_skipped(tmp_path: Path) -> None:
    root = yolo_with(tmp_path, "5 0.5 0.5 0.2 0.2")
    overrides = [
        *SHORT,
        "data.source=yolo",
        f"data.path={root}",
        "data.val_fraction=0.25",
        "trainer.max_steps=4",
        "test=false",
        "data.crop=0.0",
    ]
    with pytest.raises(DataError, match=r"003\.txt: line 1: class 5 is out of range"):
        train(make_cfg(tmp_path / "raise", *overrides))
    results = train(make_cfg(tmp_path / "skip", *overrides, "data.on_error=skip"))
    assert results["data_skipped"] == 1


@pytest.mark.slow
def test_tiny_detr_learns_synthetic_shapes(tmp_path: Path) -> None:
    train(make_cfg(tmp_path, "experiment=synthetic/object_detection"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val/map_50"] >= 0.3, metrics
