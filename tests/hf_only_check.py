"""Run by tests/test_export.py in a fresh process that never imports headstart: load each export
with transformers alone, compute its outputs on the probe inputs, run its ``pipeline()``.

    python tests/hf_only_check.py <jobs.json>

Each job: {"name", "dir", "class" (a transformers class name), "call" (logits | span | mlm | wav2vec2 |
detection | mask2former | depth | generate | seq2seq), "inputs" (a torch file of tensors), "pipeline": {"task", "input", "kwargs"} | null}.
Writes <inputs>.out.pt (the outputs) and <inputs>.pipeline.json (the pipeline's result, made
JSON-able), and exits non-zero if headstart got imported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers


def plain(value: Any) -> Any:
    """The pipeline's output as JSON (numpy scalars and arrays to Python)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return np.asarray(value).tolist()
    if hasattr(value, "size") and hasattr(value, "mode"):  # a PIL image (segmentation masks)
        return np.asarray(value).tolist()
    return value


def outputs(model: Any, call: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        if call == "logits":
            return {"logits": model(**inputs).logits}
        if call == "span":
            out = model(**inputs)
            return {"start": out.start_logits, "end": out.end_logits}
        if call == "mask2former":
            out = model(**inputs)
            return {"class_logits": out.class_queries_logits, "mask_logits": out.masks_queries_logits}
        if call == "depth":
            return {"depth": model(**inputs).predicted_depth}
        if call == "mlm":
            out = model(**inputs)
            return {"logits": out.prediction_logits if hasattr(out, "prediction_logits") else out.logits}
        if call == "wav2vec2":
            return {"hidden": model.wav2vec2(**inputs).last_hidden_state}
        if call == "detection":
            out = model(**inputs)
            return {"logits": out.logits, "boxes": out.pred_boxes}
        if call == "generate":  # causal LM: logits and the continuation under the export's generation config
            ids, mask = inputs["input_ids"], inputs["attention_mask"]
            generated = model.generate(input_ids=ids, attention_mask=mask)
            return {"logits": model(input_ids=ids, attention_mask=mask).logits, "generated": generated[:, ids.shape[1]:]}
        if call == "seq2seq":
            ids, mask = inputs["input_ids"], inputs["attention_mask"]
            logits = model(input_ids=ids, attention_mask=mask, labels=inputs["labels"]).logits
            return {"logits": logits, "generated": model.generate(input_ids=ids, attention_mask=mask)}
    raise ValueError(f"unknown call {call}")


def pipeline_input(spec: dict[str, Any]) -> Any:
    kind = spec.get("input_kind", "text")
    if kind == "audio":
        return np.asarray(spec["input"], dtype=np.float32)
    if kind == "image":
        from PIL import Image

        return Image.fromarray(np.asarray(spec["input"], dtype=np.uint8))
    return spec["input"]


def main(jobs_file: str) -> None:
    for job in json.loads(Path(jobs_file).read_text()):
        model = getattr(transformers, job["class"]).from_pretrained(job["dir"]).eval()
        inputs = torch.load(job["inputs"], weights_only=True)
        torch.save(outputs(model, job["call"], inputs), job["inputs"] + ".out.pt")
        spec = job.get("pipeline")
        result: Any = None
        if spec:
            pipe = transformers.pipeline(spec["task"], model=job["dir"], device="cpu")
            given = pipeline_input(spec)
            result = pipe(**given, **spec.get("kwargs", {})) if isinstance(given, dict) else pipe(given, **spec.get("kwargs", {}))
        Path(job["inputs"] + ".pipeline.json").write_text(json.dumps(plain(result)))
    leaked = sorted(name for name in sys.modules if name == "headstart" or name.startswith("headstart."))
    if leaked:
        raise SystemExit(f"headstart was imported: {leaked[:3]}")


if __name__ == "__main__":
    main(sys.argv[1])
