"""Depth estimation pieces: GLPN decoder parity, SILog, depth metrics, synthetic scenes, I/O, viz."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from headstart.backbones.glpn import glpn_decoder_state_dict
from headstart.data.synthetic.depth_scenes import (
    BACK_WALL,
    FLOOR,
    OBJECT_ID,
    render_scene,
    render_scene_layers,
)
from headstart.heads.depth_decoder import DepthDecoder
from headstart.losses.silog import SILogLoss, silog_loss
from headstart.metrics.depth import DepthMetrics, crop_mask, masked_median
from headstart.ops.depth_io import read_depth, resize_depth, write_depth_png
from headstart.viz.depth import colourise, depth_panel, error_map, shared_range, write_depth_colour_png

# ----------------------------------------------------------------------------- decoder


def _tiny_glpn(decoder_hidden_size: int = 16, max_depth: int = 10):  # GLPNConfig wants an int
    from transformers import GLPNConfig, GLPNForDepthEstimation

    torch.manual_seed(0)
    config = GLPNConfig(
        hidden_sizes=[8, 16, 24, 32],
        depths=[1, 1, 1, 1],
        num_attention_heads=[1, 1, 1, 1],
        sr_ratios=[4, 2, 1, 1],
        decoder_hidden_size=decoder_hidden_size,
        max_depth=max_depth,
    )
    model = GLPNForDepthEstimation(config).eval()
    # Random BatchNorm statistics and biases, so that a wrongly mapped buffer shows.
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.startswith(("decoder.", "head.")) and tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5 if "running_var" in name else torch.randn_like(tensor) * 0.3)
    return model


@pytest.mark.parametrize("decoder_hidden_size", [16, 12])  # 16: one projection is an identity
def test_decoder_matches_transformers_glpn(decoder_hidden_size: int) -> None:
    glpn = _tiny_glpn(decoder_hidden_size, max_depth=7)
    pixels = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        hidden = list(glpn.glpn(pixels, output_hidden_states=True).hidden_states)
        expected = glpn(pixels).predicted_depth
    decoder = DepthDecoder([8, 16, 24, 32], hidden_size=decoder_hidden_size, max_depth=7.0).eval()
    decoder.load_state_dict(glpn_decoder_state_dict(glpn.state_dict()), strict=True)
    with torch.no_grad():
        got = decoder(hidden, output_size=(64, 96))
        got_default_size = decoder(hidden)
    assert got.shape == expected.shape == (2, 64, 96)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_default_size, expected, atol=1e-5, rtol=0)


def test_decoder_odd_input_size_gives_input_size() -> None:
    glpn = _tiny_glpn()
    decoder = DepthDecoder([8, 16, 24, 32], hidden_size=16, max_depth=10.0)
    decoder.load_state_dict(glpn_decoder_state_dict(glpn.state_dict()))
    pixels = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        hidden = list(glpn.glpn(pixels, output_hidden_states=True).hidden_states)
    assert [tuple(h.shape[-2:]) for h in hidden] == [(12, 16), (6, 8), (3, 4), (2, 2)]  # not exact halves
    depth = decoder(hidden, output_size=(45, 61))
    assert depth.shape == (1, 45, 61)
    assert bool(((depth > 0) & (depth < 10.0)).all())
    depth.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in decoder.parameters())


def test_glpn_key_mapping_rejects_foreign_state_dict() -> None:
    with pytest.raises(ValueError, match="no GLPN decoder"):
        glpn_decoder_state_dict({"encoder.weight": torch.zeros(1)})


# ----------------------------------------------------------------------------- loss


def test_silog_matches_transformers_when_all_pixels_valid() -> None:
    from transformers.models.glpn.modeling_glpn import SiLogLoss as HFSiLogLoss

    gen = torch.Generator().manual_seed(1)
    pred = torch.rand(3, 17, 23, generator=gen) * 9 + 0.5
    target = torch.rand(3, 17, 23, generator=gen) * 9 + 0.5
    expected = HFSiLogLoss(lambd=0.5)(pred, target)
    out = SILogLoss(lambd=0.5, min_depth=1e-3, max_depth=10.0)(pred, target)
    assert set(out) == {"loss", "silog"}
    torch.testing.assert_close(out["loss"], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(silog_loss(pred, target), expected, atol=1e-5, rtol=0)


def test_silog_ignores_invalid_pixels() -> None:
    from transformers.models.glpn.modeling_glpn import SiLogLoss as HFSiLogLoss

    gen = torch.Generator().manual_seed(2)
    target = torch.rand(2, 8, 8, generator=gen) * 8 + 1
    invalid = torch.zeros_like(target, dtype=torch.bool)
    bad_values = [0.0, float("nan"), float("inf"), 12.0, 1e-4]  # missing, NaN, inf, > max, < min
    for (b, i, j), value in zip([(0, 0, 0), (0, 1, 1), (1, 2, 2), (1, 3, 3), (1, 4, 4)], bad_values):
        target[b, i, j], invalid[b, i, j] = value, True
    pred = (torch.rand(2, 8, 8, generator=gen) * 8 + 1).requires_grad_()
    out = SILogLoss(min_depth=1e-3, max_depth=10.0, weight=10.0)(pred, target)
    expected = HFSiLogLoss(0.5)(pred[~invalid].detach(), target[~invalid])
    torch.testing.assert_close(out["silog"], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["loss"], 10 * expected, atol=1e-4, rtol=0)
    out["loss"].backward()
    assert torch.isfinite(pred.grad).all()
    assert bool((pred.grad[invalid] == 0).all()) and bool((pred.grad[~invalid] != 0).any())


def test_silog_nothing_valid_is_zero_with_finite_grad() -> None:
    pred = torch.full((1, 4, 4), 2.0, requires_grad=True)
    out = SILogLoss(max_depth=10.0)(pred, torch.full((1, 4, 4), float("nan")))
    out["loss"].backward()
    assert out["loss"].item() == 0.0 and torch.isfinite(pred.grad).all()


# ----------------------------------------------------------------------------- metrics


def _hand_example() -> tuple[torch.Tensor, torch.Tensor]:
    # pixels: exact, pred half the truth, pred 3 for 4, invalid target (pred wildly off, ignored)
    return torch.tensor([[[1.0, 1.0], [3.0, 100.0]]]), torch.tensor([[[1.0, 2.0], [4.0, 0.0]]])


def _hand_values() -> dict[str, float]:
    ln2, ln43 = math.log(2), math.log(4 / 3)
    return {
        "abs_rel": (0 + 0.5 + 0.25) / 3,
        "sq_rel": (0 + 1 / 2 + 1 / 4) / 3,
        "rmse": math.sqrt((0 + 1 + 1) / 3),
        "rmse_log": math.sqrt((ln2**2 + ln43**2) / 3),
        "log10": (math.log10(2) + math.log10(4 / 3)) / 3,
        "delta1": 1 / 3,  # ratios 1, 2, 1.333
        "delta2": 2 / 3,  # 1.5625
        "delta3": 2 / 3,  # 1.953
    }


def _assert_metrics(got: dict[str, torch.Tensor], expected: dict[str, float]) -> None:
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name].item() == pytest.approx(value, abs=1e-6), name


def test_depth_metrics_hand_computed() -> None:
    metric = DepthMetrics(min_depth=1e-3, max_depth=10.0)
    pred, target = _hand_example()
    metric.update(pred.unsqueeze(1), target.unsqueeze(1))  # [B, 1, H, W] accepted too
    _assert_metrics(metric.compute(), _hand_values())


def test_depth_metrics_delta_thresholds_both_directions() -> None:
    # max(g/p, p/g) = 1.2, 1.3, 1.6, 1.9, 2.0 against thresholds 1.25, 1.5625, 1.953125
    target = torch.tensor([[[1.0, 1.3, 1.0, 1.9, 2.0]]])
    pred = torch.tensor([[[1.2, 1.0, 1.6, 1.0, 1.0]]])
    metric = DepthMetrics(reduction="pixel")
    metric.update(pred, target)
    got = metric.compute()
    assert [got[f"delta{k}"].item() for k in (1, 2, 3)] == pytest.approx([1 / 5, 2 / 5, 4 / 5])


def test_depth_metrics_image_vs_pixel_reduction_and_accumulation() -> None:
    pred, target = _hand_example()
    perfect = torch.tensor([[[2.0, 3.0], [4.0, 5.0]]])
    by_image, by_pixel = DepthMetrics(), DepthMetrics(reduction="pixel")
    for metric in (by_image, by_pixel):  # two updates: sums must make the split exact
        metric.update(pred, target)
        metric.update(perfect, perfect)
    image, pixel = by_image.compute(), by_pixel.compute()
    assert image["abs_rel"].item() == pytest.approx(0.25 / 2)
    assert image["rmse"].item() == pytest.approx(math.sqrt(2 / 3) / 2)
    assert pixel["abs_rel"].item() == pytest.approx(0.75 / 7)
    assert pixel["rmse"].item() == pytest.approx(math.sqrt(2 / 7))
    assert pixel["delta1"].item() == pytest.approx(5 / 7)
    # DDP: states from two ranks merged by summation equal one process seeing everything.
    rank0, rank1 = DepthMetrics(), DepthMetrics()
    rank0.update(pred, target)
    rank1.update(perfect, perfect)
    rank0.merge_state(rank1)
    for name, value in image.items():
        assert rank0.compute()[name].item() == pytest.approx(value.item())


def test_depth_metrics_crops() -> None:
    nyu = crop_mask(480, 640, "eigen_nyu")
    assert nyu[45:471, 41:601].all() and nyu.sum() == (471 - 45) * (601 - 41)
    garg = crop_mask(375, 1242, "garg")
    assert garg.sum() == (int(0.99189189 * 375) - int(0.40810811 * 375)) * (
        int(0.96405229 * 1242) - int(0.03594771 * 1242)
    )
    assert not garg[0].any() and garg[200, 600]
    with pytest.raises(ValueError, match="unknown depth crop"):
        DepthMetrics(crop="middle")  # type: ignore[arg-type]
    target = torch.full((1, 48, 64), 5.0)
    pred = target.clone()
    pred[:, :4] = 9.0  # wrong only above the crop
    cropped, full = DepthMetrics(crop="eigen_nyu"), DepthMetrics()
    cropped.update(pred, target)
    full.update(pred, target)
    assert cropped.compute()["abs_rel"].item() == 0.0 and full.compute()["abs_rel"].item() > 0


def test_depth_metrics_median_scaling_and_clamp() -> None:
    target = torch.tensor([[[1.0, 2.0, 3.0, 0.0]]])
    pred = torch.tensor([[[2.0, 4.0, 6.0, 50.0]]])  # twice the truth; invalid pixel off the scale
    scaled, raw = DepthMetrics(median_scaling=True), DepthMetrics()
    scaled.update(pred, target)
    raw.update(pred, target)
    assert scaled.compute()["abs_rel"].item() == pytest.approx(0.0, abs=1e-7)
    assert scaled.compute()["delta1"].item() == 1.0
    assert raw.compute()["abs_rel"].item() == pytest.approx(1.0)
    clamped = DepthMetrics(max_depth=4.0)
    clamped.update(torch.tensor([[[100.0]]]), torch.tensor([[[3.0]]]))  # pred clamped to 4
    assert clamped.compute()["abs_rel"].item() == pytest.approx(1 / 3)


def test_masked_median_matches_numpy_and_empty_is_nan() -> None:
    values = torch.tensor([[5.0, 1.0, 4.0, 2.0, 9.0], [3.0, 8.0, 1.0, 7.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    valid = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    got = masked_median(values, valid)
    assert got[0].item() == np.median([5, 1, 4, 2]) and got[1].item() == np.median([3, 8, 1])
    assert math.isnan(got[2].item())
    empty = DepthMetrics()
    empty.update(torch.ones(1, 2, 2), torch.zeros(1, 2, 2))
    assert math.isnan(empty.compute()["rmse"].item())


# ----------------------------------------------------------------------------- synthetic scenes


def test_render_scene_deterministic_and_seed_dependent() -> None:
    image_a, depth_a = render_scene(3, 40, 56, 10.0)
    image_b, depth_b = render_scene(3, 40, 56, 10.0)
    image_c, depth_c = render_scene(4, 40, 56, 10.0)
    assert np.array_equal(image_a, image_b) and np.array_equal(depth_a, depth_b)
    assert not np.array_equal(depth_a, depth_c) and not np.array_equal(image_a, image_c)


@pytest.mark.parametrize(("height", "width", "max_depth"), [(64, 64, 10.0), (45, 61, 80.0), (1, 3, 1.0)])
def test_render_scene_types_and_ranges(height: int, width: int, max_depth: float) -> None:
    for seed in range(5):
        image, depth = render_scene(seed, height, width, max_depth)
        assert image.shape == (height, width, 3) and image.dtype == np.uint8
        assert depth.shape == (height, width) and depth.dtype == np.float32
        assert np.isfinite(depth).all() and (depth > 0).all() and (depth < max_depth).all()
    assert image.std() > 0 or height * width < 10


def test_render_scene_is_fast() -> None:
    render_scene(0, 64, 64, 10.0)  # warm numpy
    times = []
    for seed in range(10):
        start = time.perf_counter()
        render_scene(seed, 64, 64, 10.0)
        times.append(time.perf_counter() - start)
    assert float(np.median(times)) < 0.020


def test_render_scene_depth_follows_image_cues() -> None:
    objects_seen = 0
    for seed in range(8):
        scene = render_scene_layers(seed, 64, 64, 10.0)
        depth, surface, image = scene.depth, scene.surface, scene.image.astype(np.float64)
        wall = surface == BACK_WALL
        objects = surface >= OBJECT_ID
        if objects.any() and wall.any():
            objects_seen += 1
            assert depth[objects].max() < depth[wall].min()  # occluders are nearer than the wall
        # Floor pixels lower in a column are nearer (perspective of a ground plane).
        floor_depth = np.where(surface == FLOOR, depth, np.nan)
        steps = np.diff(floor_depth, axis=0)
        assert (steps[np.isfinite(steps)] <= 1e-5).all()
        # Depth discontinuities (occlusion edges) show in the image.
        jumps = np.abs(np.diff(depth, axis=1)) > 0.5
        contrast = np.abs(np.diff(image, axis=1)).sum(axis=-1) > 6
        if jumps.sum() >= 10:
            assert (contrast[jumps]).mean() > 0.8
    assert objects_seen >= 6


# ----------------------------------------------------------------------------- depth I/O


def test_depth_png_roundtrip_16bit_and_kitti_scale(tmp_path: Path) -> None:
    depth = np.array([[1.2344, 0.0, 3.5], [np.nan, 65.0, -1.0]], dtype=np.float32)
    write_depth_png(tmp_path / "d.png", depth)
    assert Image.open(tmp_path / "d.png").mode == "I;16"
    back = read_depth(tmp_path / "d.png")
    expected = np.array([[1.234, 0.0, 3.5], [0.0, 65.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(back, expected, atol=1e-6)
    write_depth_png(tmp_path / "k.png", depth[:1], scale=256.0)
    np.testing.assert_allclose(read_depth(tmp_path / "k.png", scale=256.0), [[1.234375, 0, 3.5]], atol=1e-6)
    with pytest.raises(ValueError, match=r"big\.png.*16-bit"):
        write_depth_png(tmp_path / "big.png", np.array([[70.0]]))


def test_read_depth_npy_and_clear_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "ok.npy", np.array([[np.nan, 2.5], [np.inf, 0.25]]))
    np.testing.assert_array_equal(read_depth(tmp_path / "ok.npy"), np.array([[0, 2.5], [0, 0.25]], np.float32))
    np.save(tmp_path / "nan_only.npy", np.full((3, 3), np.nan))
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "zeros.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    for name, pattern in [
        ("nan_only.npy", "no valid depth"),
        ("zeros.png", "no valid depth"),
        ("broken.png", "cannot read"),
        ("rgb.png", "single-channel"),
        ("missing.npy", "cannot read"),
        ("depth.jpg", "unsupported"),
    ]:
        with pytest.raises(ValueError, match=rf"{name}.*{pattern}"):
            read_depth(tmp_path / name)


def test_resize_depth_is_nearest_and_never_blends_invalid() -> None:
    depth = np.array([[1.0, 0.0, 3.0], [4.0, 5.0, 0.0]], dtype=np.float32)
    up = resize_depth(depth, (4, 6))
    np.testing.assert_array_equal(up, np.repeat(np.repeat(depth, 2, axis=0), 2, axis=1))
    rng = np.random.default_rng(0)
    sparse = np.where(rng.random((37, 53)) < 0.3, rng.uniform(1, 9, (37, 53)), 0.0).astype(np.float32)
    for size in [(64, 64), (20, 31), (37, 53)]:
        out = resize_depth(sparse, size)
        assert out.shape == size and set(np.unique(out)) <= set(np.unique(sparse))
        reference = torch.nn.functional.interpolate(
            torch.from_numpy(sparse)[None, None], size=size, mode="nearest-exact"
        )
        np.testing.assert_array_equal(out, reference[0, 0].numpy())
        torch_out = resize_depth(torch.from_numpy(sparse)[None], size)
        assert isinstance(torch_out, torch.Tensor) and torch_out.shape == (1, *size)
        np.testing.assert_array_equal(torch_out[0].numpy(), out)


# ----------------------------------------------------------------------------- viz


def test_colourise_shared_range_invalid_and_error_map(tmp_path: Path) -> None:
    near_far = np.array([[1.0, 9.0], [0.0, np.nan]])
    rgb = colourise(near_far)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    ramp = colourise(np.array([[2.0, 5.0, 8.0]]), vmin=1.0, vmax=9.0)[0].astype(int)
    assert ramp[0, 2] > ramp[0, 0] and ramp[1, 1] > max(ramp[1, 0], ramp[1, 2]) and ramp[2, 0] > ramp[2, 2]
    assert (rgb[1] == 0).all()  # invalid black
    other = torch.tensor([[5.0, 20.0]])
    vmin, vmax = shared_range(near_far, other)
    assert (vmin, vmax) == (1.0, 20.0)
    assert np.array_equal(colourise(np.array([[5.0]]), vmin, vmax)[0, 0], colourise(other, vmin, vmax)[0, 0])
    err = error_map(np.array([[2.0, 3.0, 1.0]]), np.array([[2.0, 2.0, 0.0]]), max_rel_error=0.5)
    assert err[0, 1, 0] > err[0, 0, 0] and err[0, 1, 0] > err[0, 1, 2] and (err[0, 2] == 0).all()
    assert err[0, 0].any()  # a perfect pixel is a colour, not the invalid black
    panel = depth_panel(torch.rand(3, 8, 10), torch.rand(8, 10) + 1, torch.rand(1, 8, 10) + 1)
    assert panel.shape == (8, 40, 3) and panel.dtype == np.uint8
    write_depth_colour_png(tmp_path / "c.png", near_far, vmin, vmax)
    assert Image.open(tmp_path / "c.png").mode == "RGB"
