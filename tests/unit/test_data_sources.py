"""Every datamodule reads ``data.source`` and the split keys the same way (data/splits.py).

Parametrised over all 12 datamodule classes: an unknown source and ``source=hf`` without
``hf_name`` are the same one-line DataError everywhere (7 of them raised a plain ValueError,
which the one-line path does not catch); ``data.val_path`` next to a file ``data.path`` is
used, not dropped (text classification, NER and QA dropped it). No network, no ../shared.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headstart.data.audio import AudioClassificationDataModule, SpeechRecognitionDataModule
from headstart.data.audio_pretraining import AudioPretrainingDataModule
from headstart.data.depth import DepthEstimationDataModule
from headstart.data.detection import ObjectDetectionDataModule
from headstart.data.errors import DataError
from headstart.data.image_classification import ImageClassificationDataModule
from headstart.data.pretraining_text import TextPretrainingDataModule
from headstart.data.question_answering import QuestionAnsweringDataModule
from headstart.data.segmentation import SegmentationDataModule
from headstart.data.seq2seq import Seq2SeqDataModule
from headstart.data.splits import HF_NAME_MISSING, hold_out, split_file, split_files, split_folders
from headstart.data.text_classification import TextClassificationDataModule
from headstart.data.text_lm import TextLMDataModule
from headstart.data.token_classification import TokenClassificationDataModule

DATAMODULES = [
    AudioClassificationDataModule, SpeechRecognitionDataModule, AudioPretrainingDataModule,
    ImageClassificationDataModule, ObjectDetectionDataModule, SegmentationDataModule, DepthEstimationDataModule,
    TextClassificationDataModule, TokenClassificationDataModule, QuestionAnsweringDataModule,
    TextLMDataModule, Seq2SeqDataModule, TextPretrainingDataModule,
]  # fmt: skip


def load(dm) -> None:
    """What the builder does: hand the model's needs over (a preset: train a tokenizer on the
    data, which reads it), then set up."""
    dm.configure({})
    dm.setup("fit")


@pytest.mark.parametrize("cls", DATAMODULES, ids=lambda c: c.__name__)
def test_an_unknown_source_is_one_data_error_naming_the_choices(cls, tmp_path: Path) -> None:
    dm = cls(source="folders", path=str(tmp_path), num_workers=0)
    with pytest.raises(DataError, match=r"^data\.source=folders is not one of synthetic, .*hf for "):
        load(dm)


@pytest.mark.parametrize("cls", DATAMODULES, ids=lambda c: c.__name__)
def test_hf_without_a_name_is_one_data_error(cls) -> None:
    dm = cls(source="hf", num_workers=0)
    with pytest.raises(DataError) as caught:
        load(dm)
    assert str(caught.value) == HF_NAME_MISSING


@pytest.mark.parametrize("cls", [TextClassificationDataModule, TokenClassificationDataModule, QuestionAnsweringDataModule],
                         ids=lambda c: c.__name__)
def test_val_path_next_to_a_file_path_is_used(cls, tmp_path: Path) -> None:
    """``data.path=<file> data.val_path=<file>``: validation is that file, not held out of train."""
    train, val = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    if cls is TextClassificationDataModule:
        rows = [{"text": f"good film number {i}", "label": "pos"} for i in range(6)]
        rows += [{"text": f"bad film number {i}", "label": "neg"} for i in range(6)]
        dm = cls(source="jsonl", path=str(train), val_path=str(val), num_workers=0)
    elif cls is TokenClassificationDataModule:
        rows = [{"tokens": ["John", "went", f"home{i}"], "tags": ["B-PER", "O", "O"]} for i in range(12)]
        dm = cls(source="jsonl", path=str(train), val_path=str(val), num_workers=0)
    else:
        rows = [{"id": str(i), "question": "who went?", "context": f"John went home {i}.",
                 "answers": {"text": ["John"], "answer_start": [0]}} for i in range(12)]
        dm = cls(source="jsonl", path=str(train), val_path=str(val), num_workers=0)
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    val.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    dm._load()
    assert [w.split(":")[0] for w, _ in dm.examples["val"]] == [str(val)] * 3
    assert len(dm.examples["train"]) == 12  # nothing held out of train


def test_split_paths_explicit_keys_win_and_path_fills_the_rest(tmp_path: Path) -> None:
    """One rule for the three layouts: ``*_path`` wins, ``data.path`` fills the splits not named."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        (folder / name).write_text("{}\n")
    other = tmp_path / "other_val.jsonl"
    other.write_text("{}\n")
    assert split_file(str(folder), None, str(other), None, (".jsonl",)) == {
        "train": folder / "train.jsonl", "val": other, "test": folder / "test.jsonl"}
    assert split_file(str(folder / "train.jsonl"), None, str(other), None, (".jsonl",)) == {
        "train": folder / "train.jsonl", "val": other}
    assert split_files(str(folder), None, str(other), None, (".jsonl",)) == {
        "train": [folder / "train.jsonl"], "val": [other], "test": [folder / "test.jsonl"]}
    assert split_files(str(folder / "train.jsonl"), None, None, str(other), (".jsonl",)) == {
        "train": [folder / "train.jsonl"], "test": [other]}
    for split in ("train", "val", "test"):
        (tmp_path / "tree" / split).mkdir(parents=True)
    assert split_folders(str(tmp_path / "tree"), None, "elsewhere", None) == {
        "train": str(tmp_path / "tree" / "train"), "val": "elsewhere", "test": str(tmp_path / "tree" / "test")}
    assert split_folders(str(tmp_path / "tree" / "train"), "mine", None, None)["train"] == "mine"
    with pytest.raises(DataError, match="missing.jsonl: file or folder not found"):
        split_file(None, str(tmp_path / "missing.jsonl"), None, None, (".jsonl",))


def test_hold_out_is_seeded_keeps_order_and_never_empties_a_side() -> None:
    items = list(range(50))
    train, val = hold_out(items, 0.2, seed=3)
    assert len(val) == 10 and sorted(train + val) == items and train == sorted(train) and val == sorted(val)
    assert hold_out(items, 0.2, seed=3) == (train, val) and hold_out(items, 0.2, seed=4) != (train, val)
    assert hold_out(items, 0.2, seed=3, contiguous=True) == (items[:40], items[40:])
    assert len(hold_out([1, 2], 0.01, seed=0)[1]) == 1
    with pytest.raises(DataError, match="val_fraction=1.0 must be in"):
        hold_out(items, 1.0, seed=0)
    with pytest.raises(DataError, match="only 1 example"):
        hold_out([1], 0.5, seed=0)
