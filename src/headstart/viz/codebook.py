"""W&B media of wav2vec2 pretraining: masked frames, target and ranked-first codes, codebook usage.

- ``val/masked_predictions``: a table, one row per clip: the audio, a frame strip of the mask
  (``#`` masked, ``.`` visible), the true codes of the masked frames (the targets) and the codes of
  the candidates the model ranked first (= the targets where it is right), and its accuracy.
- ``val/code_ids``: an image of the code id per frame and group for the first clip (rows: groups,
  columns: 20 ms frames, masked frames outlined below): codebook usage over time.
- ``val/codebook_usage``: a table of how many frames of the batch picked each code, per group.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from headstart.viz.audio import audio_players


def code_strings(codes: torch.Tensor, frames: torch.Tensor) -> str:
    """codes [F, G], frames [F] bool -> "12-7 3-7 ..." for the selected frames."""
    return " ".join("-".join(str(c) for c in row) for row in codes[frames].tolist())


def codes_image(codes: np.ndarray, mask: np.ndarray, num_vars: int, scale: int = 6) -> np.ndarray:
    """codes [F, G] ints, mask [F] bool -> uint8 RGB image [(G + 1) * scale, F * scale, 3]:
    one row per group coloured by code id (hue), a last row white where the frame was masked."""
    frames, groups = codes.shape
    hue = codes.T.astype(np.float64) / max(1, num_vars)  # [G, F] in [0, 1)
    rgb = np.stack([0.5 + 0.5 * np.sin(2 * np.pi * (hue + k / 3)) for k in range(3)], axis=-1)  # [G, F, 3]
    strip = np.repeat(mask[None, :, None].astype(np.float64), 3, axis=-1)  # [1, F, 3]
    image = np.concatenate([rgb, strip], axis=0)
    return (np.kron(image, np.ones((scale, scale, 1))) * 255).astype(np.uint8)


def codebook_media(batch: dict[str, Any], outputs: dict[str, torch.Tensor], num_vars: int, sample_rate: int,
                   max_items: int) -> dict[str, Any]:  # fmt: skip
    """outputs: the validation step's extras (mask [B, F], codes [B, F, G], best [B, F], negatives [B, F, K],
    lengths [B] frames); see the module docstring for what is logged."""
    import wandb

    mask, codes = outputs["mask"].cpu(), outputs["codes"].cpu()
    batch_size, frames, groups = codes.shape
    # the code of the ranked-first candidate: index 0 is the positive, i >= 1 the (i-1)-th distractor
    flat_codes = codes.reshape(-1, groups)
    best, negatives = outputs["best"].cpu(), outputs["negatives"].cpu()
    chosen = torch.where(best > 0, negatives.gather(-1, (best - 1).clamp(min=0)[..., None])[..., 0],
                         torch.arange(batch_size * frames).view(batch_size, frames))  # fmt: skip
    predicted = flat_codes[chosen.reshape(-1)].view(batch_size, frames, groups)
    n = min(max_items, batch_size)
    players = audio_players(batch["waveforms"][:n], batch["lengths"][:n], sample_rate, [f"clip {i}" for i in range(n)])
    rows = []
    for i in range(n):
        valid = int(outputs["lengths"][i])
        strip = "".join("#" if m else "." for m in mask[i, :valid].tolist())
        hits = (predicted[i] == codes[i]).all(-1)[mask[i]]
        acc = float(hits.float().mean()) if len(hits) else float("nan")
        rows.append([players[i], strip, code_strings(codes[i], mask[i]), code_strings(predicted[i], mask[i]), round(acc, 3)])
    table = wandb.Table(columns=["audio", "masked frames", "target codes", "ranked-first codes", "codes right"], data=rows)
    first = int(outputs["lengths"][0])
    image = codes_image(codes[0, :first].numpy(), mask[0, :first].numpy(), num_vars)
    usage = [[g, v, int(c)] for g in range(groups) for v, c in enumerate(np.bincount(codes[..., g][mask].numpy(), minlength=num_vars)) if c]
    return {
        "val/masked_predictions": table,
        "val/code_ids": wandb.Image(image, caption="code id per 20 ms frame (rows: groups; last row: masked frames)"),
        "val/codebook_usage": wandb.Table(columns=["group", "code", "masked frames"], data=usage),
    }
