"""predict.visualize: the drawing functions on hand-made records (fast), then every task x model
through the real path: train tiny for 2 steps, predict.py with predict.visualize=true, and the
pictures (PNG, index.html) exist, open and name what was predicted."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from conftest import make_cfg
from headstart.data.synthetic.audio import make_audio_classification
from headstart.data.synthetic.shapes import render_shape_image
from headstart.predict import predict
from headstart.tasks.speech_recognition import ctc_segments
from headstart.train import train
from headstart.viz.audio import audio_classification_png, codes_png, transcript_png
from headstart.viz.boxes import detection_png
from headstart.viz.depth import depth_png
from headstart.viz.figure import draw_each
from headstart.viz.images import classification_png
from headstart.viz.masks import palette, segmentation_png
from headstart.viz.text_pages import fills_png, pairs_page, scores_png, spans_page
from headstart.viz.text_png import excerpt, wrap_offsets


def assert_png(path: Path) -> tuple[int, int]:
    """The file is a PNG that decodes; returns its size."""
    with Image.open(path) as image:
        assert image.format == "PNG", path
        image.verify()
    with Image.open(path) as image:
        image.load()
        return image.size


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.marks = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.marks += tag == "mark"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def page_text(path: Path) -> tuple[str, int]:
    """(visible text, number of <mark> tags) of an HTML page."""
    parser = _Collect()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return "".join(parser.text), parser.marks


# ---- drawing functions on hand-made records ---------------------------------------------------------------
@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.wav"
    sf.write(path, make_audio_classification(1, 0, num_classes=2)[0]["waveform"], 16000)
    return path


def test_image_pictures_with_and_without_findings(tmp_path: Path) -> None:
    image = render_shape_image(0, 0, 48, ("circle", "square"))[0]
    assert_png(classification_png(tmp_path / "ic.png", image, ["circle", "square"], [0.7, 0.3]))
    boxes = assert_png(detection_png(tmp_path / "det.png", image, [[4, 4, 30, 20]], ["circle"], [0], [0.9], 0.5))
    empty = assert_png(detection_png(tmp_path / "none.png", image, [], [], [], [], 0.5))
    assert boxes == empty  # same layout, the note written on the picture
    classes = np.zeros((48, 48), dtype=np.int64)
    classes[10:30, 10:30] = 2
    assert_png(segmentation_png(tmp_path / "seg.png", image, classes, palette(3), [(0, "background (83%)"), (2, "square (17%)")]))
    assert_png(segmentation_png(tmp_path / "seg0.png", image, np.full((48, 48), -1), palette(3), [], "nothing found above threshold 0.8"))
    assert_png(depth_png(tmp_path / "depth.png", image, np.linspace(0.5, 9.5, 48 * 48).reshape(48, 48)))


def test_audio_pictures(tmp_path: Path, clip: Path) -> None:
    width, height = assert_png(audio_classification_png(tmp_path / "ac.png", str(clip), ["tone", "chirp"], [0.6, 0.4]))
    assert width > 600 and height > 300
    assert_png(transcript_png(tmp_path / "asr.png", str(clip), "cat", [[0.1, 0.14, "c"], [0.2, 0.3, "a"], [0.32, 0.34, "|"]]))
    assert_png(transcript_png(tmp_path / "blank.png", str(clip), "", []))
    assert_png(codes_png(tmp_path / "codes.png", str(clip), [[k % 16, (3 * k) % 16] for k in range(40)], 0.02, 16))


def test_ctc_segments_merge_repeats_and_drop_blanks() -> None:
    vocab = ["<pad>", "<unk>", "|", "a", "b"]
    #        frames: a  a  -  a  b  |  -  b
    segments = ctc_segments([3, 3, 0, 3, 4, 2, 0, 4], vocab, frame_seconds=0.02, offset=1.0)
    assert segments == [[1.0, 1.04, "a"], [1.06, 1.08, "a"], [1.08, 1.1, "b"], [1.1, 1.12, "|"], [1.14, 1.16, "b"]]
    assert ctc_segments([0, 0, 0], vocab, 0.02) == []


def test_text_pages_escape_and_mark_spans(tmp_path: Path) -> None:
    text = "Anna <b>Berg</b> & co visited Oslo."
    records = [{"text": text, "entities": [{"start": 0, "end": 16, "type": "PER"}, {"start": 30, "end": 34, "type": "LOC"}]},
               {"text": "nothing here", "entities": []}]
    files = spans_page(records, tmp_path / "ner", "entities", lambda r: r["text"],
                       lambda r: [(e["start"], e["end"], e["type"]) for e in r["entities"]])
    page = tmp_path / "ner" / "index.html"
    assert files[0] == page and len(files) == 3
    shown, marks = page_text(page)
    assert "Anna <b>Berg</b> PER & co visited Oslo LOC." in shown and marks == 2  # each span's label after it
    assert "<b>Berg</b>" not in page.read_text() and html.escape("<b>Berg</b>") in page.read_text()
    for png in files[1:]:
        assert_png(png)

    pairs = pairs_page([{"input": "a long input " * 20, "output": "short"}], tmp_path / "gen", "generation",
                       [("input", lambda r: r["input"]), ("output", lambda r: r["output"])])
    assert "short" in page_text(pairs[0])[0] and assert_png(pairs[1])
    assert_png(scores_png(tmp_path / "tc.png", "great film", ["positive", "negative"], [0.9, 0.1]))
    assert_png(scores_png(tmp_path / "tc0.png", "great film", [], [], "no label above threshold 0.5"))
    masks = [{"position": 2, "tokens": ["cat", "dog"], "scores": [0.6, 0.2]}]
    assert_png(fills_png(tmp_path / "mlm.png", "the [MASK] sat", masks))
    assert_png(fills_png(tmp_path / "mlm0.png", "no mask", []))


def test_wrap_offsets_cover_the_text() -> None:
    text = "one two three four five six seven\neight nine " + "x" * 30
    lines = wrap_offsets(text, 12)
    assert all(end - start <= 12 for start, end in lines)
    assert "".join(text[s:e] for s, e in lines).replace(" ", "") == text.replace(" ", "").replace("\n", "")


def test_long_texts_are_cut_around_the_first_span() -> None:
    text = "x" * 5000 + "ANSWER" + "y" * 5000
    cut, spans = excerpt(text, [(5000, 5006, "answer"), (9000, 9001, "far")], limit=600)
    assert len(cut) == 602 and cut[0] == cut[-1] == "…" and [label for *_, label in spans] == ["answer"]
    assert cut[spans[0][0] : spans[0][1]] == "ANSWER"
    assert excerpt("short", [(0, 5, "a")]) == ("short", [(0, 5, "a")])


def test_a_record_that_cannot_be_drawn_is_a_warning(tmp_path: Path) -> None:
    image = render_shape_image(0, 0, 32, ("circle", "square"))[0]
    image.save(tmp_path / "ok.png")

    def draw(i: int, record: dict, out: Path) -> list[Path]:
        with Image.open(record["input"]) as picture:
            return [classification_png(out / f"{i}.png", picture.convert("RGB"), ["circle"], [1.0])]

    with pytest.warns(UserWarning, match=r"no picture for input 1 \(.*missing.png\)"):
        written = draw_each([{"input": str(tmp_path / "ok.png")}, {"input": str(tmp_path / "missing.png")}], tmp_path / "v", draw)
    assert [p.name for p in written] == ["0.png"]


# ---- every task through predict.py ------------------------------------------------------------------------
BASE = ["model.preset=tiny", "trainer.max_steps=2", "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1", "test=false"]


def _images(folder: Path) -> list[Path]:
    paths = []
    for i in range(2):
        paths.append(folder / f"img{i}.png")
        render_shape_image(3, i, 48, ("circle", "square", "triangle"))[0].save(paths[-1])
    return paths


def _clips(folder: Path) -> list[Path]:
    paths = []
    for i, example in enumerate(make_audio_classification(2, 5, num_classes=3, min_duration=0.6, max_duration=0.9)):
        paths.append(folder / f"clip{i}.wav")
        sf.write(paths[-1], example["waveform"], 16000)
    return paths


def _lines(name: str, *lines: str) -> Callable[[Path], list[Path]]:
    def write(folder: Path) -> list[Path]:
        (folder / name).write_text("".join(line + "\n" for line in lines))
        return [folder / name]
    return write


QA = json.dumps({"id": "q0", "question": "where does Anna Berg live ?", "context": "Anna Berg lives in Oslo . Omar works for Acme ."})
CASES = {  # name: (train overrides, inputs, picture kind: "png" one PNG per record, "page" also index.html)
    "image_classification": (["task=image_classification", "data.synthetic_sizes={train: 16, val: 8, test: 8}"], _images, "png"),
    "object_detection": (["task=object_detection", "data.batch_size=4", "data.synthetic_sizes={train: 8, val: 4, test: 4}",
                          "++task.predict_threshold=0.0", "++task.predict_top_k=3"], _images, "png"),
    "segmentation_segformer": (["task=segmentation", "model=segformer", "data.batch_size=2",
                                "data.synthetic_sizes={train: 4, val: 2, test: 2}"], _images, "png"),
    "segmentation_mask2former": (["task=segmentation", "model=mask2former", "task.loss.num_points=64", "task.mode=panoptic",
                                  "task.panoptic_score_threshold=0.0", "task.overlap_threshold=0.0", "data.batch_size=2",
                                  "data.synthetic_sizes={train: 4, val: 2, test: 2}"], _images, "png"),
    "depth_estimation": (["task=depth_estimation", "data.batch_size=4", "data.synthetic_sizes={train: 8, val: 4, test: 4}",
                          "data.synthetic_image_size=[32, 48]"], _images, "png"),
    "audio_classification": (["task=audio_classification", "data.batch_size=4", "data.synthetic_sizes={train: 8, val: 4, test: 4}"],
                             _clips, "png"),
    "speech_recognition": (["task=speech_recognition", "data.batch_size=4", "data.synthetic_sizes={train: 8, val: 4, test: 4}"],
                           _clips, "png"),
    "audio_pretraining": (["task=audio_pretraining", "data.batch_size=4", "data.synthetic_sizes={train: 8, val: 4}",
                           "data.synthetic_min_seconds=0.6", "trainer.val_check_interval=2"], _clips, "png"),
    "text_classification": (["task=text_classification", "data.batch_size=8", "data.synthetic_sizes={train: 16, val: 8, test: 8}"],
                            _lines("in.txt", "the movie was great .", "a <b>bold</b> & bad film"), "page"),
    "token_classification": (["task=token_classification", "data.batch_size=8", "data.synthetic_sizes={train: 16, val: 8, test: 8}"],
                             _lines("in.jsonl", json.dumps({"text": "Anna Berg visited Oslo ."}), json.dumps({"text": "EU rejects"})), "page"),  # noqa: E501
    "question_answering": (["task=question_answering", "data.batch_size=8", "data.synthetic_sizes={train: 16, val: 8, test: 8}"],
                           _lines("in.jsonl", QA), "page"),
    "text_generation": (["task=text_generation", "model.tokenizer_training.vocab_size=300", "data.batch_size=4", "data.block_size=32",
                         "data.synthetic_sizes={train: 16, val: 4}", "task.generation.max_new_tokens=4"],
                        _lines("in.jsonl", '{"prompt": "the dog"}', '{"prompt": "the king"}'), "page"),
    "summarization": (["task=summarization", "model=bart", "model.tokenizer_training.vocab_size=300", "data.batch_size=4",
                       "data.synthetic_sizes={train: 8, val: 4}", "task.generation.max_new_tokens=4", "task.generate_val_batches=1"],
                      _lines("in.txt", "the dog sees the cat . the cat runs .", "the king helps the child ."), "page"),
    "translation": (["task=translation", "model=t5", "model.tokenizer_training.vocab_size=300", "data.batch_size=4",
                     "data.synthetic_sizes={train: 8, val: 4}", "task.generation.max_new_tokens=4", "task.generate_val_batches=1"],
                    _lines("in.txt", "the dog sees the cat", "the bird finds the fish"), "page"),
    "denoising": (["task=denoising", "model=bart", "model.tokenizer_training.vocab_size=300", "data.batch_size=4", "data.block_size=32",
                   "data.synthetic_sizes={train: 16, val: 4}", "task.generation.max_new_tokens=4"],
                  _lines("in.txt", "the dog <mask> the cat .", "the old king helps the small child ."), "page"),
    "masked_lm": (["task=masked_lm", "data.batch_size=8", "data.block_size=32", "data.synthetic_sizes={train: 16, val: 8}",
                   "task.predict_top_k=3"], _lines("in.txt", "the [MASK] dog near the king sings .", "the [MASK] [MASK] ."), "page"),
}


# Each case is 3-10 s, but 16 of them add ~100 s: slow, so `make test-fast` stays under 5 minutes.
@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_predict_visualize_writes_a_picture_per_input(tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    overrides, make_inputs, kind = CASES[case]
    ckpt = train(make_cfg(tmp_path / "run", *BASE, *overrides))["best_checkpoint"]
    (tmp_path / "in").mkdir()
    inputs = ",".join(str(p) for p in make_inputs(tmp_path / "in"))
    records = predict(make_cfg(tmp_path / "pred", f"ckpt_path={ckpt}", f"inputs=[{inputs}]", "predict.visualize=true",
                               config_name="predict"))
    out = tmp_path / "pred" / "visualizations"
    assert f"pictures: {out}" in capsys.readouterr().out
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == len(records) >= 1
    for png in pngs:
        assert_png(png)
    if kind == "page":
        shown, _ = page_text(out / "index.html")
        first = records[0]
        expected = first.get("text") or first.get("context") or first.get("input")
        assert all(word in shown for word in expected.split()[:6]), (expected, shown[:300])
