"""Training throughput of headstart's image classification against a plain PyTorch loop.

Both use the same model (ViT or ConvNeXT config, random init), the same synthetic data loader
and the same precision; the plain loop is AdamW + autocast with nothing else. Prints samples/s
of each and their ratio (headstart / plain). Run on CPU or GPU:

    python scripts/bench_image_classification.py --model vit --preset base --batch-size 128 \
        --steps 60 --precision bf16-mixed --image-size 224
    python scripts/bench_image_classification.py --model vit --preset tiny --steps 30  # CPU
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
import tempfile

import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict

from headstart.run.checks import CONF_DIR
from headstart.run.config import register_resolvers
from headstart.train import train

PRESETS = {  # extra presets for benchmarking at realistic sizes (random init, offline)
    "base": {
        "vit": dict(model_type="vit", image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12,
                    num_attention_heads=12, intermediate_size=3072),
        "convnext": dict(model_type="convnext", hidden_sizes=[96, 192, 384, 768], depths=[3, 3, 9, 3]),
    }
}


def compose_cfg(args: argparse.Namespace, out: Path) -> object:
    register_resolvers()
    overrides = [
        f"model={args.model}", f"model.preset={args.preset}", f"data.batch_size={args.batch_size}",
        f"data.synthetic_sizes={{train: {args.batch_size * (args.steps + args.warmup)}, val: {args.batch_size}, test: {args.batch_size}}}",
        f"trainer.max_steps={args.steps + args.warmup}", f"trainer.precision={args.precision}",
        "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "logger=csv", "test=false",
        f"paths.root_dir={out}", f"paths.output_dir={out}", "~callbacks.rich_progress_bar", "~callbacks.media",
        "trainer.enable_progress_bar=false", f"data.num_workers={args.workers}", f"callbacks.throughput.warmup_steps={args.warmup}", "trainer.log_every_n_steps=50",
        f"data.image_size={args.image_size}", "data.synthetic_image_size=64",
    ]
    if args.preset in PRESETS:
        overrides += [f"+model.presets.{args.preset}={{{', '.join(f'{k}: {v}' for k, v in PRESETS[args.preset][args.model].items())}}}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def plain_loop(cfg: object, args: argparse.Namespace, device: torch.device) -> float:
    """AdamW + autocast over the same loader and model; samples/s after ``warmup`` steps."""
    backbone = instantiate({k: v for k, v in cfg.model.items() if k not in ("name", "tasks")}, _convert_="all")
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.configure(backbone.data_spec())
    labels = datamodule.info()["labels"]
    datamodule.setup("fit")
    head = torch.nn.Linear(backbone.hidden_size, len(labels))
    model = torch.nn.ModuleDict({"backbone": backbone, "head": head}).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    dtype = torch.bfloat16 if args.precision.startswith("bf16") else None
    seen, start = 0, None
    for step, batch in enumerate(datamodule.train_dataloader()):
        if step == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, seen = time.perf_counter(), 0
        x = batch["pixel_values"].to(device, non_blocking=True)
        y = batch["labels"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model["head"](model["backbone"](x).pooled).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += x.shape[0]
        if step + 1 == args.steps + args.warmup:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="vit", choices=["vit", "convnext"])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(tempfile.mkdtemp(prefix="bench_"))
    cfg = compose_cfg(args, out)
    plain = plain_loop(cfg, args, device)
    results = train(cfg)
    ours = results["train_samples_per_second"]
    print(f"device={device} model={args.model}/{args.preset} batch={args.batch_size} precision={args.precision}")
    print(f"plain PyTorch loop : {plain:10.1f} samples/s (after {args.warmup} warm-up steps)")
    print(f"headstart train()  : {ours:10.1f} samples/s (after {args.warmup} warm-up steps)")
    print(f"ratio headstart/plain: {ours / plain:.3f}   peak memory {results['peak_memory_mb']:.0f} MB")


if __name__ == "__main__":
    main()
