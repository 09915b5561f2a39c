"""Bad-input catalogue: every malformed file is one line naming file and row, or a counted skip.

Each case writes a small dataset with one bad file (or row) into tmp_path and drives the task's
real datamodule as run/build.py does (config composed by make_cfg, configure with the tiny
backbone's data_spec, setup, every train/val batch iterated with num_workers=0):

* ``data.on_error=raise``: a DataError whose one-line message names the file (and line);
* ``data.on_error=skip``: the bad example appears once in the batches' ``_skipped`` (what
  callbacks/data_skips.py counts into metrics.json ``data_skipped``), nothing else is lost.

Cases whose input is legitimately accepted (stereo downmixed, odd sample rate resampled)
assert what was done and that it was logged once. A few cases run train.py in a subprocess
with a loader worker, for errors raised inside a worker process.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import soundfile as sf
from hydra.utils import instantiate
from PIL import Image

from conftest import NO_RICH, ROOT, make_cfg
from headstart.data.errors import DataError
from headstart.run.build import MODEL_META_KEYS, without

Build = Callable[[Path], list[str]]  # writes the dataset under a folder, returns its overrides
_SPECS: dict[str, dict] = {}  # backbone data_spec per model: built once, the data needs only this


# ---- driving a datamodule ---------------------------------------------------------------------
def setup_data(tmp_path: Path, overrides: list[str]) -> Any:
    """The task's datamodule, configured with the tiny backbone's data_spec and set up for fit."""
    cfg = make_cfg(tmp_path / "run", "model.preset=tiny", *overrides)
    key = f"{cfg.task.name}/{cfg.model.name}"
    if key not in _SPECS:
        _SPECS[key] = instantiate(without(cfg.model, MODEL_META_KEYS), _convert_="all").data_spec()
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.configure(dict(_SPECS[key]))
    datamodule.info()
    datamodule.setup("fit")
    return datamodule


def run_data(tmp_path: Path, overrides: list[str]) -> list[str]:
    """Set the data up as a training run does and read every train/val batch; returns the skips."""
    datamodule = setup_data(tmp_path, overrides)
    skipped: list[str] = []
    for loader in (datamodule.train_dataloader(), datamodule.val_dataloader()):
        for batch in loader:
            skipped += batch.get("_skipped", [])
            # examples skipped while reading text ride on kept ones: no batch is left empty
            # (an empty one ended token classification in KeyError 'attention_mask')
            assert "input_ids" not in batch or (batch["input_ids"].shape[0] > 0 and "attention_mask" in batch), batch
    return skipped


# ---- small file writers -------------------------------------------------------------------------
def png_bytes(seed: int, size: int = 24, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def wav_bytes(seconds: float = 0.5, rate: int = 16000, channels: int = 1, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    wave = (0.3 * rng.standard_normal((int(seconds * rate), channels))).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# ---- image classification (folder) -------------------------------------------------------------
def image_tree(root: Path, bad_name: str | None = None, bad: bytes = b"") -> list[str]:
    for split, n in (("train", 4), ("val", 2)):
        for label in ("cat", "dog"):
            for i in range(n):
                write(root / split / label / f"{i}.png", png_bytes(i + 10 * len(split)))
    if bad_name:
        write(root / "train" / "cat" / bad_name, bad)
    return ["task=image_classification", "model=vit", "data.source=folder", f"data.path={root}", "data.batch_size=4"]


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def empty_class_folder(root: Path) -> list[str]:
    overrides = image_tree(root)
    write(root / "train" / "bird" / "notes.txt", "no images here")
    return overrides


def empty_dataset(root: Path) -> list[str]:
    (root / "train").mkdir(parents=True)
    return ["task=image_classification", "model=vit", "data.source=folder", f"data.path={root}"]


# ---- object detection (COCO / YOLO) ------------------------------------------------------------
def coco(root: Path, bad: dict | None = None, missing_image: bool = False) -> list[str]:
    images, anns = [], []
    for i in range(4):
        name = f"{i}.png"
        if not (missing_image and i == 3):
            write(root / "images" / name, png_bytes(i, 32))
        images.append({"id": i, "file_name": name, "width": 32, "height": 32})
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [4, 4, 10, 12], "area": 120, "iscrowd": 0})
    if bad:
        anns[3].update(bad)
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "ball"}, {"id": 2, "name": "box"}]}
    write(root / "annotations.json", json.dumps(data))
    return ["task=object_detection", "model=detr", "data.source=coco", f"data.path={root}", "data.batch_size=2",
            "data.val_fraction=0.25"]


def yolo(root: Path, bad_line: str) -> list[str]:
    for split in ("train", "val"):
        for i in range(3):
            write(root / "images" / split / f"{i}.png", png_bytes(i, 32))
            write(root / "labels" / split / f"{i}.txt", "0 0.5 0.5 0.3 0.3\n")
    write(root / "labels" / "train" / "2.txt", f"0 0.5 0.5 0.3 0.3\n{bad_line}\n")
    return ["task=object_detection", "model=detr", "data.source=yolo", f"data.path={root}", "data.classes=[ball,box]",
            "data.batch_size=2"]


# ---- segmentation (image + class-index mask folders) -------------------------------------------
def masks(root: Path, bad_mask: np.ndarray) -> list[str]:
    for split in ("train", "val"):
        for i in range(3):
            write(root / "images" / split / f"{i}.png", png_bytes(i, 32))
            mask = np.zeros((32, 32), np.uint8)
            mask[8:20, 8:20] = 1
            buffer = io.BytesIO()
            Image.fromarray(bad_mask if (split, i) == ("train", 2) else mask).save(buffer, "PNG")
            write(root / "masks" / split / f"{i}.png", buffer.getvalue())
    return ["task=segmentation", "model=segformer", "data.source=folder", f"data.path={root}", "data.num_classes=2",
            "data.image_size=32", "data.batch_size=2"]


# ---- depth (image + .npy pairs) ----------------------------------------------------------------
def depth_pairs(root: Path, bad: np.ndarray | None = None, scale_all: float = 1.0, extra: tuple[str, ...] = ()) -> list[str]:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(3):
            write(root / split / "images" / f"{i}.png", png_bytes(i, 32))
            depth = (rng.uniform(0.5, 5.0, (32, 32)) * scale_all).astype(np.float32)
            if bad is not None and (split, i) == ("train", 2):
                depth = bad
            (root / split / "depth").mkdir(parents=True, exist_ok=True)
            np.save(root / split / "depth" / f"{i}.npy", depth)
    return ["task=depth_estimation", "model=glpn", "data.source=folder", f"data.path={root}", "data.batch_size=2", *extra]


# ---- audio (manifest / folder) -----------------------------------------------------------------
def manifest(root: Path, bad: bytes | None = None, missing: bool = False) -> list[str]:
    rows = []
    for i in range(6):
        name = f"clip{i}.wav"
        label = "yes" if i % 2 else "no"
        if i == 5 and missing:
            name = "gone.wav"
        else:
            write(root / name, bad if (i == 5 and bad is not None) else wav_bytes(seed=i))
        rows.append(json.dumps({"path": name, "label": label}))
    write(root / "train.jsonl", "\n".join(rows) + "\n")
    write(root / "val.jsonl", "\n".join(rows[:2]) + "\n")
    return ["task=audio_classification", "model=wav2vec2", "data.source=manifest", f"data.train_path={root / 'train.jsonl'}",
            f"data.val_path={root / 'val.jsonl'}", "data.batch_size=2"]


def zero_length_wav() -> bytes:
    return wav_bytes(seconds=0.0)


# ---- token classification (CoNLL) --------------------------------------------------------------
CONLL = "John NNP B-NP B-PER\nlives VBZ B-VP O\nin IN B-PP O\nParis NNP B-NP B-LOC\n"


def conll(root: Path, bad_sentence: str, where: str = "train") -> list[str]:
    train = "\n".join([CONLL] * 6)
    val = "\n".join([CONLL] * 2)
    if where == "train":
        train += "\n" + bad_sentence
    else:
        val += "\n" + bad_sentence
    write(root / "train.txt", train)
    write(root / "val.txt", val)
    return ["task=token_classification", "model=bert", "data.source=conll", f"data.path={root}", "data.batch_size=2"]


def conll_bytes(root: Path) -> list[str]:
    overrides = conll(root, "")
    write(root / "train.txt", (root / "train.txt").read_bytes() + b"\nM\xfcller NNP B-NP B-PER\n")
    return overrides


# ---- question answering (SQuAD) ----------------------------------------------------------------
def squad(root: Path, bad: dict) -> list[str]:
    context = "Anna lives in Paris. Bob works in Rome."
    qas = [{"id": f"q{i}", "question": "Where does Anna live?", "answers": [{"text": "Paris", "answer_start": 14}]} for i in range(4)]
    paragraphs = [{"context": context, "qas": qas}, {"context": bad.pop("context", context), "qas": [
        {"id": "bad", "question": "Where does Bob work?", "answers": [bad]}]}]
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}
    write(root / "train.json", json.dumps(data, indent=1))  # lines, so the message can name the question's
    write(root / "val.json", json.dumps({"version": "1.1", "data": [{"title": "v", "paragraphs": paragraphs[:1]}]}))
    return ["task=question_answering", "model=bert", "data.source=squad", f"data.path={root}", "data.batch_size=2",
            "data.max_length=64", "data.doc_stride=16"]


# ---- text (generation, classification, translation) --------------------------------------------
SENTENCES = [f"the cat number {i} sat on the mat and looked at the dog ." for i in range(40)]


def lm_text(root: Path, bad: bytes) -> list[str]:
    write(root / "train.txt", ("\n".join(SENTENCES[:20])).encode() + b"\n" + bad + b"\n" + ("\n".join(SENTENCES[20:])).encode() + b"\n")
    write(root / "val.txt", "\n".join(SENTENCES[:10]) + "\n")
    return ["task=text_generation", "model=gpt2", "data.source=text", f"data.path={root}", "data.document_split=line",
            "data.block_size=16", "data.batch_size=4"]


def lm_records(root: Path, suffix: str, bad: str) -> list[str]:
    if suffix == "csv":
        good = ["text"] + [f'"{s}"' for s in SENTENCES]
    else:
        good = [json.dumps({"text": s}) for s in SENTENCES]
    lines = good[:1] + [bad] + good[1:]  # the bad record first: nothing after it may be lost
    write(root / f"train.{suffix}", "\n".join(lines) + "\n")
    write(root / f"val.{suffix}", "\n".join(good[:11]) + "\n")
    return ["task=text_generation", "model=gpt2", f"data.source={'csv' if suffix == 'csv' else 'jsonl'}", f"data.path={root}",
            "data.document_split=line", "data.block_size=16", "data.batch_size=4"]


def text_cls(root: Path, bad: str) -> list[str]:
    good = [json.dumps({"text": s, "label": "pos" if i % 2 else "neg"}) for i, s in enumerate(SENTENCES[:16])]
    write(root / "train.jsonl", "\n".join(good[:8] + [bad] + good[8:]) + "\n")
    write(root / "val.jsonl", "\n".join(good[:4]) + "\n")
    return ["task=text_classification", "model=bert", "data.source=jsonl", f"data.path={root}", "data.batch_size=4"]


def parallel(root: Path, src_extra: str = "", tgt_lines: list[str] | None = None) -> list[str]:
    src = [f"the house {i} is red" for i in range(8)]
    tgt = tgt_lines if tgt_lines is not None else [f"das haus {i} ist rot" for i in range(8)]
    write(root / "train.en", "\n".join(src) + "\n" + src_extra)
    write(root / "train.de", "\n".join(tgt) + "\n")
    write(root / "val.en", "\n".join(src[:2]) + "\n")
    write(root / "val.de", "\n".join(tgt[:2]) + "\n")
    return ["task=translation", "model=t5", "data.source=parallel", f"data.path={root}", "data.batch_size=2"]


def qa_jsonl(root: Path, bad: str) -> list[str]:
    good = [json.dumps({"id": f"q{i}", "question": "Where does Anna live?", "context": "Anna lives in Paris.",
                        "answers": {"text": ["Paris"], "answer_start": [14]}}) for i in range(6)]
    write(root / "train.jsonl", "\n".join(good[:3] + [bad] + good[3:]) + "\n")
    write(root / "val.jsonl", "\n".join(good[:2]) + "\n")
    return ["task=question_answering", "model=bert", "data.source=jsonl", f"data.path={root}", "data.batch_size=2",
            "data.max_length=64", "data.doc_stride=16"]


def ner_jsonl(root: Path, bad: str) -> list[str]:
    good = [json.dumps({"tokens": ["John", "lives", "in", "Paris"], "tags": ["B-PER", "O", "O", "B-LOC"]})] * 6
    write(root / "train.jsonl", "\n".join(good[:3] + [bad] + good[3:]) + "\n")
    write(root / "val.jsonl", "\n".join(good[:2]) + "\n")
    return ["task=token_classification", "model=bert", "data.source=jsonl", f"data.path={root}", "data.batch_size=2"]


def text_csv(root: Path, bad: str) -> list[str]:
    good = ["text,label"] + [f"{s},{'pos' if i % 2 else 'neg'}" for i, s in enumerate(SENTENCES[:12])]
    write(root / "train.csv", "\n".join(good[:5] + [bad] + good[5:]) + "\n")
    write(root / "val.csv", "\n".join(good[:5]) + "\n")
    return ["task=text_classification", "model=bert", "data.source=csv", f"data.path={root}", "data.batch_size=4"]


def speech_manifest(root: Path, bad_text: str) -> list[str]:
    rows = []
    for i in range(5):
        write(root / f"s{i}.wav", wav_bytes(seed=i))
        rows.append(json.dumps({"path": f"s{i}.wav", "text": bad_text if i == 4 else "cat dog"}))
    write(root / "train.jsonl", "\n".join(rows) + "\n")
    write(root / "val.jsonl", "\n".join(rows[:2]) + "\n")
    return ["task=speech_recognition", "model=wav2vec2", "data.source=manifest", f"data.train_path={root / 'train.jsonl'}",
            f"data.val_path={root / 'val.jsonl'}", "data.batch_size=2"]


def pretrain_text(root: Path, task: str, model: str) -> list[str]:
    """Nine validation blocks and a bad line: with 9 per batch, the marker alone made the last batch."""
    write(root / "train.txt", "\n".join(SENTENCES) + "\n")
    write(root / "val.txt", ("\n".join(SENTENCES[:8])).encode() + b"\nbad \xff line\n")
    return [f"task={task}", f"model={model}", "data.source=text", f"data.path={root}", "data.block_size=16",
            "data.document_split=line", "data.eval_batch_size=9"]


def coco_not_json(root: Path) -> list[str]:
    overrides = coco(root)
    write(root / "annotations.json", (root / "annotations.json").read_text()[:50])
    return overrides


# ---- the catalogue ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    build: Build
    where: str  # what the message must name: the file, with ":line" where lines exist
    message: str  # a fragment of the reason
    under_skip: Literal["skip", "error"] = "skip"  # error: nothing sensible is left to skip to
    overrides: tuple[str, ...] = field(default=())


WIDE = np.ones((40, 40), np.float32)
ANN3 = "annotations.json (image 3.png): annotation 3"
CASES = [
    Case("truncated_jpeg", lambda r: image_tree(r, "bad.jpg", truncated(png_bytes(1, 64, "JPEG"))), "bad.jpg", "truncated"),
    Case("truncated_png", lambda r: image_tree(r, "bad.png", truncated(png_bytes(1, 64))), "bad.png", "truncated"),
    Case("zero_byte_image", lambda r: image_tree(r, "empty.png", b""), "empty.png", "cannot identify"),
    Case("text_named_jpg", lambda r: image_tree(r, "notes.jpg", b"hello, not an image\n"), "notes.jpg", "cannot identify"),
    Case("class_folder_without_images", empty_class_folder, "train/bird", "class folder has no images", "error"),
    Case("empty_dataset_folder", empty_dataset, "data/train: no images", "no images", "error"),
    Case("coco_negative_width", lambda r: coco(r, {"bbox": [20, 4, -10, 12]}), ANN3, "negative size"),
    Case("coco_nan_box", lambda r: coco(r, {"bbox": [float("nan"), 4, 10, 12]}), ANN3, "not finite"),
    Case("coco_unknown_category", lambda r: coco(r, {"category_id": 9}), ANN3, "category 9"),
    Case("coco_missing_image", lambda r: coco(r, missing_image=True), "3.png", "No such file"),
    Case("yolo_class_out_of_range", lambda r: yolo(r, "7 0.5 0.5 0.2 0.2"), "2.txt: line 2", "class 7 is out of range"),
    Case("yolo_malformed_line", lambda r: yolo(r, "0 0.5 0.5"), "2.txt:2", "expected 'class cx cy w h'"),
    Case("mask_wrong_size", lambda r: masks(r, np.zeros((16, 16), np.uint8)), "2.png", "mask is 16x16"),
    Case("mask_id_beyond_num_classes", lambda r: masks(r, np.full((32, 32), 7, np.uint8)), "2.png",
         "label values [7] are not in the class set"),
    Case("depth_all_nan", lambda r: depth_pairs(r, np.full((32, 32), np.nan, np.float32)), "2.npy", "no valid depth"),
    Case("depth_all_inf", lambda r: depth_pairs(r, np.full((32, 32), np.inf, np.float32)), "2.npy", "no valid depth"),
    Case("depth_wrong_rank", lambda r: depth_pairs(r, np.ones((2, 32, 32), np.float32)), "2.npy", "[H, W]"),
    Case("depth_wrong_shape_no_resize", lambda r: depth_pairs(r, WIDE, extra=("data.resize_depth=false",)), "2.npy", "40x40"),
    Case("depth_millimetres", lambda r: depth_pairs(r, np.full((32, 32), 2345.0, np.float32)), "2.npy", "exceed data.max_depth=10"),
    Case("wav_truncated", lambda r: manifest(r, truncated(wav_bytes(1.0))), "clip5.wav", "truncated"),
    Case("wav_zero_length", lambda r: manifest(r, zero_length_wav()), "clip5.wav", "no audio samples"),
    Case("wav_zero_bytes", lambda r: manifest(r, b""), "clip5.wav", "empty (0 bytes)"),
    Case("manifest_missing_file", lambda r: manifest(r, missing=True), "train.jsonl:6", "not found"),
    Case("conll_missing_column", lambda r: conll(r, "John NNP B-PER\nruns VBZ B-VP O\n"), "train.txt:31",
         "3 columns, expected token column 0 and tag column -1 (the file's lines have 4 columns)"),
    Case("conll_unknown_tag_in_val", lambda r: conll(r, "Anna NNP B-NP B-XYZ\n", where="val"), "val.txt:11", "unknown tag 'B-XYZ'"),
    Case("conll_non_utf8", conll_bytes, "train.txt:32", "not valid UTF-8"),
    # issue 28: a zero-width space tagged B-PER became no token and its entity vanished (data_skipped 0)
    Case("conll_word_that_is_no_token", lambda r: conll(r, "John NNP B-NP B-PER\n\u200b NNP B-NP I-PER\n"), "train.txt:32",
         "becomes no token for this tokenizer"),
    Case("squad_answer_start_mismatch", lambda r: squad(r, {"text": "Rome", "answer_start": 3}), "train.json:56", "does not match"),
    Case("squad_empty_context", lambda r: squad(r, {"text": "Rome", "answer_start": 0, "context": " "}), "train.json:56", "empty context"),
    Case("text_non_utf8_line", lambda r: lm_text(r, b"caf\xe9 au lait"), "train.txt:21", "not valid UTF-8"),
    Case("csv_unclosed_quote", lambda r: lm_records(r, "csv", '"the bad line, never closed'), "train.csv:2", "malformed CSV record"),
    Case("jsonl_malformed_line", lambda r: lm_records(r, "jsonl", '{"text": "half'), "train.jsonl:2", "bad JSON"),
    Case("jsonl_missing_column", lambda r: text_cls(r, json.dumps({"text": "no label here"})), "train.jsonl:9", "missing column 'label'"),
    Case("jsonl_empty_text", lambda r: text_cls(r, json.dumps({"text": "  ", "label": "pos"})), "train.jsonl:9", "empty 'text'"),
    Case("parallel_different_lengths", lambda r: parallel(r, src_extra="one more line\n"), "train.en:9", "no matching line", "error"),
    Case("coco_annotations_not_json", coco_not_json, "annotations.json", "not valid JSON", "error"),
    Case("yolo_non_numeric_line", lambda r: yolo(r, "ball 0.5 0.5 0.2 0.2"), "2.txt:2", "expected 'class cx cy w h'"),
    Case("mask_rgb_not_class_index", lambda r: masks(r, np.zeros((32, 32, 3), np.uint8)), "2.png", "mask mode RGB"),
    Case("depth_all_negative", lambda r: depth_pairs(r, np.full((32, 32), -1.0, np.float32)), "2.npy", "no valid depth"),
    Case("wav_too_short", lambda r: manifest(r, wav_bytes(0.005)), "clip5.wav", "outside the allowed 0.025 s or more"),
    Case("speech_empty_transcript", lambda r: speech_manifest(r, " "), "train.jsonl:5", "empty 'text'"),
    Case("ner_jsonl_lengths_differ", lambda r: ner_jsonl(r, json.dumps({"tokens": ["a", "b"], "tags": ["O"]})), "train.jsonl:4",
         "must be lists of the same length"),
    Case("qa_jsonl_missing_context", lambda r: qa_jsonl(r, json.dumps({"id": "x", "question": "Who?"})), "train.jsonl:4",
         "missing column 'context'"),
    Case("csv_extra_field", lambda r: text_csv(r, "one,two,three"), "train.csv:6", "3 fields, header has 2"),
    Case("mlm_non_utf8_val_line", lambda r: pretrain_text(r, "masked_lm", "bert"), "val.txt:9", "not valid UTF-8"),
    Case("denoising_non_utf8_val_line", lambda r: pretrain_text(r, "denoising", "bart"), "val.txt:9", "not valid UTF-8"),
    Case("parallel_empty_line", lambda r: parallel(r, tgt_lines=[f"das haus {i}" if i != 3 else "" for i in range(8)]),
         "train.de:4", "empty target line"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_raise_names_file_and_row(case: Case, tmp_path: Path) -> None:
    overrides = case.build(tmp_path / "data")
    with pytest.raises(DataError) as info:
        run_data(tmp_path, [*overrides, *case.overrides, "data.on_error=raise"])
    message = str(info.value)
    assert "\n" not in message, message
    assert case.where in message and case.message in message, message


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_skip_is_counted(case: Case, tmp_path: Path) -> None:
    overrides = case.build(tmp_path / "data")
    if case.under_skip == "error":  # nothing to skip to: still the one clear line
        with pytest.raises(DataError, match=case.message):
            run_data(tmp_path, [*overrides, *case.overrides, "data.on_error=skip"])
        return
    skipped = run_data(tmp_path, [*overrides, *case.overrides, "data.on_error=skip"])
    named = sorted({s for s in skipped if case.where in s})
    assert len(named) == 1 and case.message in named[0], skipped
    location = named[0].split(": ", 1)[0]
    assert f"{location}: {location}" not in named[0], named[0]  # the reason does not repeat where
    assert len(set(skipped)) == 1, f"only the bad example may be skipped: {skipped}"


BY_ID = {case.id: case for case in CASES}


def test_csv_bad_record_costs_only_its_line(tmp_path: Path) -> None:
    """A stray quote used to swallow every later line into one record (the whole file lost)."""
    from headstart.data.errors import Skipped
    from headstart.data.sources.text import read_csv

    path = write(tmp_path / "t.csv", "text,label\n" + '"never closed,a\n' + "".join(f"row {i},b\n" for i in range(10)))
    records = list(read_csv(path, on_error="skip"))
    assert [w for w, r in records if isinstance(r, Skipped)] == [f"{path}:2"]
    assert [r["text"] for _, r in records if not isinstance(r, Skipped)] == [f"row {i}" for i in range(10)]


@pytest.mark.parametrize("bbox", [[40, 40, 10, 10], [4, 4, 0, 12]], ids=["outside_image", "zero_area"])
def test_coco_box_outside_or_of_zero_area_is_dropped_and_counted(tmp_path: Path, bbox: list[float]) -> None:
    """Accepted by design (data/detection.py): such a box cannot be trained on; it is dropped and
    counted in ``boxes_dropped`` (logged per split as <stage>/boxes_dropped), the image kept."""
    datamodule = setup_data(tmp_path, coco(tmp_path / "data", {"bbox": bbox}))
    examples = [ex for ds in (datamodule.train_set, datamodule.val_set) for ex in (ds[i] for i in range(len(ds)))]
    bad = next(ex for ex in examples if ex["paths"].endswith("3.png"))
    assert bad["boxes_dropped"] == 1 and len(bad["target"]["boxes"]) == 0
    assert all(ex["boxes_dropped"] == 0 for ex in examples if ex is not bad)


def test_stereo_and_odd_rate_audio_are_converted_and_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from headstart.data import audio_io

    monkeypatch.setattr(audio_io, "_noted", set())
    root = tmp_path / "data"
    overrides = manifest(root)
    for i in (1, 2):
        write(root / f"clip{i}.wav", wav_bytes(0.5, channels=2, seed=i))
    for i in (3, 4):
        write(root / f"clip{i}.wav", wav_bytes(0.5, rate=22050, seed=i))
    with caplog.at_level(logging.WARNING, logger=audio_io.__name__):
        assert run_data(tmp_path, overrides) == []
    messages = [r.getMessage() for r in caplog.records if r.name == audio_io.__name__]
    assert sum("mixing to mono" in m for m in messages) == 1, messages
    assert sum("22050 Hz; resampling to 16000 Hz" in m for m in messages) == 1, messages
    stereo, _ = sf.read(root / "clip1.wav", dtype="float32")
    mono = audio_io.load_audio(root / "clip1.wav", 16000, normalize=False)
    assert mono.shape == (8000,) and np.allclose(mono, stereo.mean(axis=1), atol=1e-6)
    assert audio_io.load_audio(root / "clip3.wav", 16000, normalize=False).shape == (8000,)


# Errors raised lazily inside a loader worker process (num_workers=1), through train.py.
WORKER_CASES = ["coco_unknown_category", "depth_wrong_rank"]


@pytest.mark.slow  # a real train.py process each (~30 s on 2 shared cores)
@pytest.mark.parametrize("case_id", WORKER_CASES)
def test_error_in_a_loader_worker_is_one_line_from_train_py(case_id: str, tmp_path: Path) -> None:
    case = BY_ID[case_id]
    overrides = case.build(tmp_path / "data")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides, "model.preset=tiny", "data.num_workers=1",
         "trainer.accelerator=cpu", "trainer.max_steps=3", "trainer.num_sanity_val_steps=0", "test=false",
         "logger=csv", "trainer.enable_progress_bar=false", *NO_RICH,
         f"hydra.run.dir={tmp_path / 'run'}", f"paths.log_dir={tmp_path}/logs"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and case.where in last and case.message in last, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Caught DataError" not in proc.stderr, proc.stderr[-3000:]


def test_skipped_sentence_in_validation_trains_and_reaches_metrics_json(tmp_path: Path) -> None:
    """The reported failure, end to end: an unknown tag in the validation file under skip ended
    in KeyError 'attention_mask' (its batch held only the skipped sentence)."""
    from headstart.train import train

    overrides = conll(tmp_path / "data", "Anna NNP B-NP B-XYZ\n", where="val")
    results = train(make_cfg(tmp_path / "run", *overrides, "model.preset=tiny", "data.on_error=skip", "trainer.max_steps=2",
                             "trainer.num_sanity_val_steps=0", "test=false"))
    assert results["data_skipped"] == 1 and "val/f1" in results


def test_byte_order_mark_is_not_text(tmp_path: Path) -> None:
    """A CSV saved with a BOM (Excel) kept it in its first column's name: every row 'missing column'."""
    from headstart.data.sources.text import read_csv, read_lines

    path = write(tmp_path / "t.csv", "\ufefftext,label\nhello,a\n")
    assert [r for _, r in read_csv(path)] == [{"text": "hello", "label": "a"}]
    assert [t for _, t in read_lines(write(tmp_path / "t.txt", "\ufeffhello\n"))] == ["hello"]


def test_batch_of_only_a_skipped_clip_trains_and_is_counted(tmp_path: Path) -> None:
    """Batch size 1: the zero-byte clip's batch is empty; the audio task skips the step (the NaN
    guard read outputs['loss'] of the skipped step: KeyError 'loss')."""
    from headstart.train import train

    overrides = manifest(tmp_path / "data", b"")
    results = train(make_cfg(tmp_path / "run", *overrides, "model.preset=tiny", "data.on_error=skip", "data.batch_size=1",
                             "trainer.max_epochs=1", "trainer.num_sanity_val_steps=0", "test=false"))
    assert results["data_skipped"] == 1 and "val/acc" in results


@pytest.mark.slow
@pytest.mark.parametrize("case_id", ["zero_byte_image", "coco_missing_image", "mask_wrong_size", "depth_wrong_rank"])
def test_vision_batch_of_only_a_skipped_image_trains_and_is_counted(case_id: str, tmp_path: Path) -> None:
    """Batch size 1: the bad image's batch is empty; the vision task skips the step (the model
    was called on a [0, 3, 1, 1] tensor: 'Kernel size can't be greater than actual input size')."""
    from headstart.train import train

    case = BY_ID[case_id]
    overrides = [*case.build(tmp_path / "data"), *case.overrides]
    results = train(make_cfg(tmp_path / "run", *overrides, "model.preset=tiny", "data.on_error=skip", "data.batch_size=1",
                             "trainer.max_epochs=1", "trainer.num_sanity_val_steps=0", "test=false", "callbacks.media=null"))
    assert results["data_skipped"] >= 1, results
    assert any(key.startswith("val/") for key in results), results


@pytest.mark.parametrize("case", ["yolo_label_without_image", "image_without_mask"])
def test_unpaired_files_are_named_or_counted_never_dropped_silently(case: str, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Issue 28: a YOLO label file without its image, and a segmentation image without its mask,
    were left out without a word."""
    root = tmp_path / "data"
    if case == "yolo_label_without_image":
        overrides = yolo(root, "1 0.5 0.5 0.2 0.2")
        write(root / "labels" / "train" / "9.txt", "0 0.5 0.5 0.3 0.3\n")
        orphan, what = "9.txt", "a label file without its image"
    else:
        overrides = masks(root, np.zeros((32, 32), np.uint8))
        write(root / "images" / "train" / "7.png", png_bytes(7, 32))
        orphan, what = "7.png", "an image without a mask"
    with pytest.raises(DataError, match=rf"{orphan}: {what} under .*data\.on_error=skip"):
        setup_data(tmp_path / "a", overrides)
    with caplog.at_level("WARNING", logger="headstart.data.errors"):
        run_data(tmp_path / "b", [*overrides, "data.on_error=skip"])
    assert f"data.on_error=skip: left out 1 files: {what}" in caplog.text and orphan in caplog.text
