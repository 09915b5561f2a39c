"""Depth estimation end to end: GLPN backbone, data sources, train/eval/predict, bad depth, learning.

Unit tests of the decoder, SILog parity, metrics, scenes, depth I/O and colour maps are in
tests/unit/test_depth.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_cfg
from headstart.data.depth import DepthEstimationDataModule, PadCollate, PairTransform
from headstart.data.errors import DataError
from headstart.data.synthetic.depth_scenes import render_scene
from headstart.eval import evaluate
from headstart.metrics.depth import METRIC_NAMES
from headstart.ops.depth_io import read_depth, write_depth_png
from headstart.predict import predict
from headstart.run.build import build
from headstart.train import train

SHORT = [
    "task=depth_estimation",
    "model.preset=tiny",
    "trainer.max_steps=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "data.batch_size=4",
    "data.synthetic_sizes={train: 12, val: 8, test: 8}",
    "data.synthetic_image_size=[32, 48]",
]
METRIC_KEYS = [f"{split}/{name}" for split in ("val", "test") for name in METRIC_NAMES]


@pytest.fixture
def pair_folder(tmp_path: Path) -> Path:
    """One folder per pair (rgb.png + depth_m.npy, as ../shared/data/depth), some depth at half size."""
    root = tmp_path / "pairs"
    for i in range(6):
        image, depth = render_scene(100 + i, 40, 56, 9.5)
        pair = root / f"scene{i}"
        pair.mkdir(parents=True)
        Image.fromarray(image).save(pair / "rgb.png")
        np.save(pair / "depth_m.npy", depth[::2, ::2] if i % 2 else depth)
    return root


# ---- training, eval, predict ------------------------------------------------------------------
def test_trains_evals_and_predicts_from_checkpoint(tmp_path: Path, pair_folder: Path) -> None:
    results = train(make_cfg(tmp_path / "run", *SHORT, "logger=default", "task.flip_test=true"))
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in [*METRIC_KEYS, "val/loss", "val/silog", "best_checkpoint", "fit_seconds", "train_samples_per_second"]:
        assert key in written, key
    assert 0.0 <= written["val/delta1"] <= written["val/delta2"] <= written["val/delta3"] <= 1.0
    assert written["global_step"] == 3 and Path(written["best_checkpoint"]).is_file()
    # W&B (offline) got depth panels: image | true | predicted | error, side by side.
    media = list((tmp_path / "run" / "wandb").glob("offline-run-*/**/media/images/**/*.png"))
    assert media and Image.open(media[0]).size == (4 * 48, 32)

    ckpt = results["best_checkpoint"]
    metrics = evaluate(make_cfg(tmp_path / "eval", f"ckpt_path={ckpt}", "split=test", config_name="eval"))
    assert metrics["test/abs_rel"] == pytest.approx(results["test/abs_rel"], abs=1e-6)

    # Prediction on files of other sizes than training: depth comes back at each file's size.
    inputs = [next(pair_folder.glob("scene0/rgb.png")), next(pair_folder.glob("scene1/rgb.png"))]
    Image.open(inputs[1]).resize((61, 45)).save(tmp_path / "odd.png")
    pred_dir = tmp_path / "pred"
    records = predict(make_cfg(pred_dir, f"ckpt_path={ckpt}", f"inputs=[{inputs[0]},{tmp_path / 'odd.png'}]",
                               "predict.visualize=true", config_name="predict"))
    lines = [json.loads(line) for line in (pred_dir / "predictions.jsonl").read_text().splitlines()]
    assert lines == records and [r["input"] for r in records] == [str(inputs[0]), str(tmp_path / "odd.png")]
    for record, size in zip(records, [(40, 56), (45, 61)]):
        metres = np.load(record["depth_npy"])
        png = Image.open(record["depth_png"])
        assert metres.shape == size and metres.dtype == np.float32 and png.mode in ("I;16", "I")
        assert 0 < metres.min() and metres.max() < 10.0
        np.testing.assert_allclose(read_depth(record["depth_png"]), metres, atol=5e-4)  # millimetres
        assert record["png_scale"] == 1000.0
        assert Image.open(record["depth_colour"]).mode == "RGB"
        assert Path(record["depth_png"]).parent == pred_dir / "depth"
    assert len(list((pred_dir / "visualizations").glob("*.png"))) == 2


def test_flip_test_averages_with_the_mirrored_prediction(tmp_path: Path) -> None:
    task = build(make_cfg(tmp_path, *SHORT, "task.flip_test=true")).task.eval()
    pixels = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        both = task.predict_depth(pixels)
        expected = 0.5 * (task(pixels) + task(pixels.flip(-1)).flip(-1))
        mirrored = task.predict_depth(pixels.flip(-1)).flip(-1)
    torch.testing.assert_close(both, expected)
    torch.testing.assert_close(mirrored, both, atol=1e-5, rtol=0)  # flip-averaged depth is mirror-consistent


def test_glpn_depth_checkpoint_gives_its_decoder_weights(tmp_path: Path) -> None:
    """A local GLPNForDepthEstimation checkpoint: the task then predicts exactly what transformers does."""
    from transformers import GLPNConfig, GLPNForDepthEstimation

    torch.manual_seed(0)
    config = GLPNConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
                        sr_ratios=[4, 2, 1, 1], decoder_hidden_size=16, max_depth=10)
    reference = GLPNForDepthEstimation(config).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics so that a dropped buffer shows
        for name, tensor in reference.state_dict().items():
            if name.startswith("decoder.") and "running_var" in name:
                tensor.copy_(torch.rand_like(tensor) + 0.5)
    reference.save_pretrained(tmp_path / "glpn-depth")
    built = build(make_cfg(tmp_path, *SHORT, f"model.checkpoint={tmp_path / 'glpn-depth'}", "model.preset=null",
                           "data.max_depth=10"))
    task = built.task.eval()
    assert task.backbone.feature_channels == [8, 16, 24, 32] and task.backbone.feature_strides == [4, 8, 16, 32]
    assert task.backbone.data_spec()["size_multiple"] == 32
    pixels = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(task(pixels), reference(pixels).predicted_depth, atol=1e-5, rtol=0)
    # The checkpoint rebuilds offline from the saved meta: no decoder weights needed from the hub.
    rebuilt = built.task.backbone.rebuild_kwargs()
    assert rebuilt["pretrained"] is False and rebuilt["config"]["model_type"] == "glpn"


# ---- data ---------------------------------------------------------------------------------------
def _datamodule(**kwargs: object) -> DepthEstimationDataModule:
    dm = DepthEstimationDataModule(num_workers=0, **kwargs)
    dm.configure({"image_mean": (0.0,) * 3, "image_std": (1.0,) * 3, "size_multiple": 32})
    dm.setup("fit")
    return dm


def test_folder_layouts_and_nearest_resize(tmp_path: Path, pair_folder: Path) -> None:
    dm = _datamodule(source="folder", train_path=str(pair_folder), val_path=str(pair_folder), hflip=0.0)
    assert len(dm.train_set) == len(dm.val_set) == 6
    half = dm.val_set[1]  # depth stored at 20x28, image 40x56: resized by nearest neighbour
    stored = np.load(pair_folder / "scene1" / "depth_m.npy")
    assert half["depth"].shape == (40, 56)
    assert set(np.unique(half["depth"].numpy())) <= set(np.unique(stored))
    # Parallel images/ + depth/ folders with 16-bit PNG millimetres, and <name>_depth siblings.
    parallel, siblings = tmp_path / "parallel", tmp_path / "siblings"
    for i in range(3):
        image, depth = render_scene(i, 24, 32, 9.0)
        for folder in (parallel / "images", parallel / "depth", siblings):
            folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(parallel / "images" / f"{i}.jpg")
        write_depth_png(parallel / "depth" / f"{i}.png", depth)
        Image.fromarray(image).save(siblings / f"{i}.png")
        write_depth_png(siblings / f"{i}_depth.png", depth)
    for root in (parallel, siblings):
        dm = _datamodule(source="folder", path=str(root), val_fraction=0.34)
        assert (len(dm.train_set), len(dm.val_set)) == (2, 1)
        assert dm.val_set[0]["depth"].max() < 9.0


def test_joint_flip_and_crop_keep_image_and_depth_aligned() -> None:
    # Depth = column index + 1 and red channel = column index: alignment is checkable per pixel.
    cols = np.tile(np.arange(40, dtype=np.float32), (30, 1))
    image = np.stack([cols, np.zeros_like(cols), np.zeros_like(cols)], axis=-1).astype(np.uint8)
    transform = PairTransform(True, None, (24, 24), 0.5, (0.0,) * 3, (1.0 / 255,) * 3)
    flipped = 0
    for seed in range(8):
        torch.manual_seed(seed)
        pixels, depth = transform(image, cols + 1.0)
        assert pixels.shape == (3, 24, 24) and depth.shape == (24, 24)
        torch.testing.assert_close(pixels[0] + 1.0, depth)
        flipped += int(depth[0, 0] > depth[0, -1])
    assert 0 < flipped < 8


def test_pad_collate_marks_padding_invalid() -> None:
    samples = [{"pixel_values": torch.ones(3, 20, 30), "depth": torch.full((20, 30), 2.0), "paths": "a"},
               {"pixel_values": torch.ones(3, 33, 17), "depth": torch.full((33, 17), 3.0), "paths": "b"}]
    batch = PadCollate(32)(samples)
    assert batch["pixel_values"].shape == (2, 3, 64, 32) and batch["depth"].shape == (2, 64, 32)
    assert batch["sizes"].tolist() == [[20, 30], [33, 17]]
    assert batch["depth"][0, 20:].eq(0).all() and batch["depth"][1, :, 17:].eq(0).all()
    assert batch["depth"][1, :33, :17].eq(3.0).all()


def test_nyu_list_files(tmp_path: Path) -> None:
    root = tmp_path / "nyu"
    (root / "scene").mkdir(parents=True)
    for i in range(3):
        image, depth = render_scene(i, 24, 32, 9.0)
        Image.fromarray(image).save(root / "scene" / f"rgb_{i}.jpg")
        write_depth_png(root / "scene" / f"sync_depth_{i}.png", depth)
    rows = [f"/scene/rgb_{i}.jpg /scene/sync_depth_{i}.png 518.8579" for i in range(3)]
    (root / "train.txt").write_text("\n".join(rows[:2] + ["/scene/rgb_2.jpg None 518.8579"]) + "\n")
    (root / "test.txt").write_text(rows[2] + "\n")
    dm = _datamodule(source="nyu", path=str(root), train_path="train.txt", val_path="test.txt", test_path="test.txt")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (2, 1, 1)  # the "None" row is left out
    assert dm.val_set[0]["depth"].shape == (24, 32)
    (root / "bad.txt").write_text(rows[0] + "\nonly_one_field.jpg\n")
    with pytest.raises(DataError, match=r"bad.txt:2: expected '<image> <depth>"):
        _datamodule(source="nyu", path=str(root), train_path="bad.txt", val_path="test.txt")


def test_hf_dataset_with_float_depth_images(tmp_path: Path) -> None:
    import datasets

    rows = [render_scene(i, 24, 32, 9.0) for i in range(4)]
    table = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(im) for im, _ in rows], "depth_map": [Image.fromarray(d, mode="F") for _, d in rows]},
        features=datasets.Features({"image": datasets.Image(), "depth_map": datasets.Image()}),
    )
    datasets.DatasetDict({"train": table, "validation": table.select([0])}).save_to_disk(str(tmp_path / "hf"))
    dm = _datamodule(source="hf", path=str(tmp_path / "hf"), hflip=0.0)
    assert (len(dm.train_set), len(dm.val_set)) == (4, 1)
    np.testing.assert_allclose(dm.val_set[0]["depth"].numpy(), rows[0][1], rtol=1e-6)


# ---- bad depth -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bad", "resize", "message"),
    [
        (np.full((40, 56), np.nan, np.float32), True, "no valid depth"),
        (np.zeros((40, 56), np.float32), True, "no valid depth"),
        (np.ones((40, 56, 3), np.float32), True, r"expected a numeric \[H, W\] array"),
        (np.ones((20, 28), np.float32), False, r"depth is 20x28 but its image is 40x56 \(data.resize_depth=false\)"),
    ],
    ids=["nan", "all_invalid", "three_channels", "wrong_size_no_resize"],
)
def test_bad_depth_names_the_file(pair_folder: Path, bad: np.ndarray, resize: bool, message: str) -> None:
    np.save(pair_folder / "scene0" / "depth_m.npy", bad)
    dm = _datamodule(source="folder", train_path=str(pair_folder), val_path=str(pair_folder), resize_depth=resize)
    with pytest.raises(DataError, match=rf"scene0/depth_m.npy: .*{message}"):
        dm.val_set[0]


def test_bad_depth_is_a_counted_skip(tmp_path: Path, pair_folder: Path) -> None:
    np.save(pair_folder / "scene2" / "depth_m.npy", np.full((40, 56), np.nan, np.float32))
    overrides = [*SHORT, "data.source=folder", f"data.train_path={pair_folder}", f"data.val_path={pair_folder}",
                 "trainer.max_steps=4", "test=false"]
    with pytest.raises(DataError, match="scene2/depth_m.npy"):
        train(make_cfg(tmp_path / "raise", *overrides))
    results = train(make_cfg(tmp_path / "skip", *overrides, "data.on_error=skip"))
    assert results["data_skipped"] == 2  # once in train, once in val


# ---- learning ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_glpn_learns_synthetic_depth(tmp_path: Path) -> None:
    train(make_cfg(tmp_path, "experiment=synthetic/depth_estimation"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val/delta1"] >= 0.7, metrics
