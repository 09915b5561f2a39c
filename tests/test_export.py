"""Export to the Hugging Face format (issue 23): train tiny -> ``export=true`` -> load with
transformers alone in a process that never imports headstart -> the same outputs as headstart's
task on the same inputs (logits to 1e-4, generations and CTC transcripts identical), and the
task's ``pipeline()`` runs on the export. Plus the model card and the offline hub upload."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import make_cfg
from headstart.export import export
from headstart.run.checkpoint import load_checkpoint, rebuild
from headstart.run.errors import ConfigError
from headstart.run.hf_export import push_to_hub
from headstart.train import train

COMMON = ["model.preset=tiny", "trainer.max_steps=2", "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0",
          "test=false", "export=true", "data.batch_size=4", "logger=csv"]
SIZES = "data.synthetic_sizes={train: 16, val: 8, test: 8}"
GENERATION = ["model.tokenizer_training.vocab_size=300", "task.generation.max_new_tokens=6", "task.generate_val_batches=1"]
CHECKER = Path(__file__).with_name("hf_only_check.py")


@dataclass
class Case:
    """One task's run: its overrides, the transformers class, the probe and what headstart computes."""

    overrides: list[str]
    hf_class: str
    call: str
    pipeline: dict[str, Any] | None
    results: dict[str, Any] = field(default_factory=dict)
    expected: dict[str, torch.Tensor] = field(default_factory=dict)
    compare: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


SENTENCES = ["peter lives in paris", "the eu rejects the call"]
WAVE_LENGTHS = [8000, 6000]


def text_batch(tokenizer: Any, first: list[str], second: list[str] | None = None) -> dict[str, torch.Tensor]:
    return dict(tokenizer(first, second, padding=True, return_tensors="pt")) if second else dict(
        tokenizer(first, padding=True, return_tensors="pt"))


def waves() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    batch = torch.zeros(len(WAVE_LENGTHS), max(WAVE_LENGTHS))
    for row, n in enumerate(WAVE_LENGTHS):
        clip = torch.randn(n, generator=generator)
        batch[row, :n] = (clip - clip.mean()) / clip.std()
    return batch, torch.tensor(WAVE_LENGTHS)


def probe(name: str, task: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """(HF inputs, headstart's outputs on them, extras) for one task."""
    with torch.no_grad():
        if name.startswith("text_classification"):
            inputs = text_batch(task.backbone.tokenizer, SENTENCES)
            return inputs, {"logits": task(inputs)}, {}
        if name == "token_classification":
            inputs = text_batch(task.backbone.tokenizer, SENTENCES)
            return inputs, {"logits": task(inputs)}, {}
        if name == "question_answering":
            inputs = text_batch(task.backbone.tokenizer, ["who lives in paris", "what is rejected"], SENTENCES)
            start, end = task(inputs)
            return inputs, {"start": start, "end": end}, {}
        if name.startswith("image_classification"):
            size = int(task.backbone.data_spec()["image_size"])
            pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
            return {"pixel_values": pixels}, {"logits": task(pixels)}, {}
        if name.startswith("segmentation"):
            size = int(task.backbone.data_spec()["image_size"])
            pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
            out = task.predict_outputs(pixels)
            if name == "segmentation_segformer":
                return {"pixel_values": pixels}, {"logits": out}, {}
            return {"pixel_values": pixels}, {"class_logits": out["class_logits"], "mask_logits": out["mask_logits"]}, {}
        if name == "depth_estimation":
            pixels = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
            return {"pixel_values": pixels}, {"depth": task(pixels)}, {}
        if name == "object_detection":
            size = int(task.backbone.data_spec()["image_size"])
            pixels = torch.randn(2, 3, size, size + 8, generator=torch.Generator().manual_seed(0))
            mask = torch.ones(2, size, size + 8, dtype=torch.long)
            mask[1, :, size:] = 0  # the second image is narrower: padded on the right, as the collate pads
            logits, boxes = task(pixels, mask)
            return {"pixel_values": pixels, "pixel_mask": mask}, {"logits": logits[-1], "boxes": boxes[-1]}, {}
        if name == "masked_lm":
            inputs = text_batch(task.backbone.tokenizer, SENTENCES)
            selected = inputs["attention_mask"].bool()
            batch = {**inputs, "labels": inputs["input_ids"].masked_fill(~selected, -100)}
            return inputs, {"logits": task(batch)["mlm_logits"]}, {"selected": selected}
        if name in ("audio_classification", "speech_recognition", "audio_pretraining"):
            batch, lengths = waves()
            mask = (torch.arange(batch.shape[1])[None, :] < lengths[:, None]).long()
            inputs = {"input_values": batch, "attention_mask": mask}
            if name == "audio_classification":
                return inputs, {"logits": task(batch, lengths)}, {}
            if name == "audio_pretraining":
                out = task.backbone(batch, lengths)
                return inputs, {"hidden": out.hidden_states}, {"frames": out.extras["lengths"].tolist()}
            logits, frames = task(batch, lengths)
            return inputs, {"logits": logits}, {"frames": frames.tolist(), "texts": task.decode(logits, frames)}
        tokenizer = task.backbone.tokenizer
        if name == "text_generation":
            inputs = text_batch(tokenizer, ["the lord"])
            hidden = task.backbone(inputs["input_ids"], inputs["attention_mask"])
            weight, bias = task.backbone.lm_head()
            settings = {**task.generation, **task.sampling.get(task.predict_strategy, {})}
            generated = task.backbone.generate(inputs["input_ids"], inputs["attention_mask"], **settings)
            return inputs, {"logits": logits_of(hidden, weight, bias), "generated": generated}, {}
        inputs = text_batch(tokenizer, SENTENCES)
        inputs["labels"] = text_batch(tokenizer, ["a b", "c"])["input_ids"].masked_fill(
            text_batch(tokenizer, ["a b", "c"])["attention_mask"] == 0, -100)
        hidden = task.backbone(inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
        weight, bias = task.backbone.lm_head()
        generated = task.backbone.generate(inputs["input_ids"], inputs["attention_mask"], **task.generation)
        return inputs, {"logits": logits_of(hidden, weight, bias), "generated": generated}, {}


def logits_of(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    logits = hidden @ weight.T
    return logits + bias if bias is not None else logits


AUDIO = np.random.default_rng(0).standard_normal(16000).astype(np.float32).tolist()
IMAGE = np.random.default_rng(0).integers(0, 256, (40, 48, 3)).tolist()
CASES = {
    "text_classification": Case(["task=text_classification", SIZES], "AutoModelForSequenceClassification", "logits",
                                {"task": "text-classification", "input": "peter lives in paris", "kwargs": {"top_k": None}}),
    "text_classification_distilbert": Case(["task=text_classification", "model=distilbert", SIZES],
                                           "AutoModelForSequenceClassification", "logits",
                                           {"task": "text-classification", "input": "peter lives in paris", "kwargs": {"top_k": None}}),
    "token_classification": Case(["task=token_classification", SIZES], "AutoModelForTokenClassification", "logits",
                                 {"task": "token-classification", "input": "peter lives in paris"}),
    # transformers 5 removed the question-answering, summarization and translation pipelines
    "question_answering": Case(["task=question_answering", SIZES], "AutoModelForQuestionAnswering", "span", None),
    "image_classification": Case(["task=image_classification", SIZES], "AutoModelForImageClassification", "logits",
                                 {"task": "image-classification", "input": IMAGE, "input_kind": "image"}),
    "image_classification_convnext": Case(["task=image_classification", "model=convnext", SIZES],
                                          "AutoModelForImageClassification", "logits",
                                          {"task": "image-classification", "input": IMAGE, "input_kind": "image"}),
    "object_detection": Case(["task=object_detection", "data.synthetic_sizes={train: 8, val: 4, test: 4}"],
                             "DetrForObjectDetection", "detection",
                             {"task": "object-detection", "input": IMAGE, "input_kind": "image", "kwargs": {"threshold": 0.0}}),
    "segmentation": Case(["task=segmentation", "task.loss.num_points=64", "data.synthetic_sizes={train: 4, val: 2, test: 2}"],
                         "Mask2FormerForUniversalSegmentation", "mask2former",
                         {"task": "image-segmentation", "input": IMAGE, "input_kind": "image", "kwargs": {"subtask": "semantic"}}),
    "segmentation_segformer": Case(["task=segmentation", "model=segformer", "data.synthetic_sizes={train: 4, val: 2, test: 2}"],
                                   "SegformerForSemanticSegmentation", "logits",
                                   {"task": "image-segmentation", "input": IMAGE, "input_kind": "image"}),
    "depth_estimation": Case(["task=depth_estimation", "data.synthetic_sizes={train: 4, val: 2, test: 2}"],
                             "GLPNForDepthEstimation", "depth",
                             {"task": "depth-estimation", "input": np.random.default_rng(0).integers(0, 256, (64, 96, 3)).tolist(),
                              "input_kind": "image"}),
    "masked_lm": Case(["task=masked_lm", "data.block_size=32", "data.synthetic_sizes={train: 16, val: 8}"],
                      "BertForPreTraining", "mlm", {"task": "fill-mask", "input": "peter lives in [MASK]"}),
    "denoising": Case(["task=denoising", "data.block_size=32", "data.synthetic_sizes={train: 16, val: 8}",
                       "model.tokenizer_training.vocab_size=300", "task.generation.max_new_tokens=6"],
                      "BartForConditionalGeneration", "seq2seq", None),
    "audio_pretraining": Case(["task=audio_pretraining", "data.synthetic_sizes={train: 8, val: 4}", "data.synthetic_min_seconds=0.6",
                               "data.synthetic_max_seconds=0.9"], "Wav2Vec2ForPreTraining", "wav2vec2", None),
    "audio_classification": Case(["task=audio_classification", SIZES], "Wav2Vec2ForSequenceClassification", "logits",
                                 {"task": "audio-classification", "input": AUDIO, "input_kind": "audio"}),
    "speech_recognition": Case(["task=speech_recognition", SIZES], "Wav2Vec2ForCTC", "logits",
                               {"task": "automatic-speech-recognition", "input": AUDIO, "input_kind": "audio"}),
    "text_generation": Case(["task=text_generation", "data.synthetic_sizes={train: 40, val: 10}",
                             "model.tokenizer_training.vocab_size=300"], "GPT2LMHeadModel", "generate",
                            {"task": "text-generation", "input": "the lord", "kwargs": {"max_new_tokens": 4}}),
    "summarization": Case(["task=summarization", "data.synthetic_sizes={train: 16, val: 8}", *GENERATION],
                          "BartForConditionalGeneration", "seq2seq", None),
    "translation": Case(["task=translation", "model=t5", "data.synthetic_sizes={train: 16, val: 8}", *GENERATION],
                        "T5ForConditionalGeneration", "seq2seq", None),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    """Every case trained (2 steps, ``export=true``), probed in headstart, then checked in ONE
    fresh process with transformers alone (tests/hf_only_check.py)."""
    root = tmp_path_factory.mktemp("export")
    jobs = []
    for name, case in CASES.items():
        case.results = train(make_cfg(root / name, *COMMON, *case.overrides))
        ckpt = case.results["best_checkpoint"]
        cfg = make_cfg(root / f"{name}-probe", f"ckpt_path={ckpt}", "inputs=none", config_name="predict")
        task = rebuild(cfg, load_checkpoint(ckpt)).task.eval()
        inputs, case.expected, case.extra = probe(name, task)
        torch.save(inputs, root / f"{name}.pt")
        jobs.append({"name": name, "dir": case.results["hf_dir"], "class": case.hf_class, "call": case.call,
                     "inputs": str(root / f"{name}.pt"), "pipeline": case.pipeline})
    (root / "jobs.json").write_text(json.dumps(jobs))
    done = subprocess.run([sys.executable, str(CHECKER), str(root / "jobs.json")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for job in jobs:
        case = CASES[job["name"]]
        case.extra["hf"] = torch.load(job["inputs"] + ".out.pt", weights_only=True)
        case.extra["pipeline"] = json.loads(Path(job["inputs"] + ".pipeline.json").read_text())
    return CASES


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_transformers_alone_computes_what_headstart_computes(exported: dict[str, Case], name: str) -> None:
    case = exported[name]
    hf = case.extra["hf"]
    assert (Path(case.results["hf_dir"]) / "model.safetensors").is_file()
    for key, expected in case.expected.items():
        got = hf[key]
        if key == "generated":  # greedy / beam decoding: the very same tokens
            assert torch.equal(got, expected), (got, expected)
        elif name == "masked_lm":  # headstart scores the labelled positions only
            torch.testing.assert_close(got[case.extra["selected"]], expected, atol=1e-4, rtol=0)
        elif name in ("speech_recognition", "audio_pretraining"):  # frames past a clip's end are padding in both
            for row, frames in enumerate(case.extra["frames"]):
                torch.testing.assert_close(got[row, :frames], expected[row, :frames], atol=1e-4, rtol=0)
        else:
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    if name == "speech_recognition":
        from transformers import Wav2Vec2Processor

        processor = Wav2Vec2Processor.from_pretrained(case.results["hf_dir"])
        ids = hf["logits"].argmax(-1)
        texts = [processor.decode(ids[row, :frames]) for row, frames in enumerate(case.extra["frames"])]
        assert texts == case.extra["texts"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, case in CASES.items() if case.pipeline])
def test_the_tasks_pipeline_runs_on_the_export(exported: dict[str, Case], name: str) -> None:
    result = exported[name].extra["pipeline"]
    config = json.loads((Path(exported[name].results["hf_dir"]) / "config.json").read_text())
    labels = set((config.get("id2label") or {}).values())
    if name in ("token_classification",):
        assert result and all(item["entity"] in labels for item in result)
    elif name.startswith(("text_classification", "image_classification")) or name == "audio_classification":
        assert result and all(item["label"] in labels and 0 <= item["score"] <= 1 for item in result)
    elif name.startswith("segmentation"):
        assert result and all(item["label"] in labels and len(item["mask"]) == 40 for item in result)
    elif name == "depth_estimation":
        assert np.asarray(result["predicted_depth"]).shape[-2:] == (64, 96) and np.isfinite(result["predicted_depth"]).all()
    elif name == "object_detection":
        assert result and all(item["label"] in labels and set(item["box"]) == {"xmin", "ymin", "xmax", "ymax"} for item in result)
    elif name == "speech_recognition":
        assert isinstance(result["text"], str)
    elif name == "masked_lm":
        assert len(result) == 5 and all(0 <= item["score"] <= 1 and item["sequence"].startswith("peter lives in") for item in result)
    else:
        assert name == "text_generation" and result[0]["generated_text"].startswith("the lord")


@pytest.mark.slow
def test_the_model_card_parses_and_carries_the_runs_metrics(exported: dict[str, Case]) -> None:
    from huggingface_hub import ModelCard

    case = exported["token_classification"]
    card = ModelCard.load(Path(case.results["hf_dir"]) / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "token-classification"
    written = json.loads((Path(case.results["hf_dir"]).parent / "metrics.json").read_text())
    on_card = {result.metric_name: result.metric_value for result in card.data.eval_results}
    assert on_card and on_card == {k: v for k, v in written.items() if k.startswith(("val/", "test/"))}
    assert "python train.py" in card.text and "task=token_classification" in card.text


@pytest.mark.slow
def test_export_py_writes_the_same_model_from_a_checkpoint(exported: dict[str, Case], tmp_path: Path) -> None:
    """``python export.py ckpt_path=...`` (here its function) gives the weights ``export=true`` wrote."""
    from safetensors.torch import load_file

    case = exported["image_classification"]
    out = tmp_path / "again"
    export(make_cfg(tmp_path, f"ckpt_path={case.results['best_checkpoint']}", f"out={out}", config_name="export"))
    first, second = (load_file(str(Path(d) / "model.safetensors")) for d in (case.results["hf_dir"], out))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_push_to_hub_offline_is_one_line_naming_the_way_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match=r"push_to_hub=me/model: the hub is offline.*huggingface-cli upload me/model") as info:
        push_to_hub(tmp_path, "me/model")
    assert "\n" not in str(info.value)


def test_export_true_on_a_model_without_an_exact_export_stops_before_fitting(tmp_path: Path) -> None:
    """ViT with mean pooling: ViTForImageClassification reads the [CLS] state, so there is no exact
    export; ``export=true`` says so in one line before training, not after it."""
    with pytest.raises(ConfigError, match=r"model.pooling=mean on vit; AutoModelForImageClassification \(vit\) pools with cls") as info:
        train(make_cfg(tmp_path, "task=image_classification", "model.pooling=mean", *COMMON, SIZES))
    assert "\n" not in str(info.value) and not (tmp_path / "checkpoints").exists()


# ---- the way in: model.checkpoint=<a transformers task model> keeps its head (issue 23, item 4) ----


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_an_export_scores_in_eval_py_as_its_checkpoint_does(exported: dict[str, Case], name: str, tmp_path: Path) -> None:
    """export -> ``eval.py model.checkpoint=<export>`` (no ckpt_path) -> the original checkpoint's metrics."""
    from headstart.eval import evaluate

    case = exported[name]
    from_ckpt = evaluate(make_cfg(tmp_path / "ckpt", f"ckpt_path={case.results['best_checkpoint']}", "split=val",
                                  config_name="eval"))
    overrides = [o for o in case.overrides if not o.startswith("model.tokenizer_training")]
    export_dir = case.results["hf_dir"]
    from_export = evaluate(make_cfg(tmp_path / "hf", *overrides, "data.batch_size=4", "model.preset=null",
                                    f"model.checkpoint={export_dir}", "split=val", config_name="eval"))
    scores = {k: v for k, v in from_ckpt.items() if k.startswith("val/") and "loss" not in k and "/ce" not in k}
    assert scores and {k: from_export[k] for k in scores} == pytest.approx(scores, abs=1e-5)


def test_a_token_classifier_saved_by_transformers_keeps_its_head_with_rows_in_the_datas_order(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoModelForTokenClassification, BertConfig, BertTokenizerFast

    from headstart.backbones.hf_text import HFTextEncoder
    from headstart.tasks.token_classification import TokenClassificationTask

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "peter", "lives", "in", "paris"]) + "\n")
    theirs = ["B-PER", "O", "I-PER", "B-LOC", "I-LOC"]
    config = BertConfig(vocab_size=9, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        id2label=dict(enumerate(theirs)), label2id={label: i for i, label in enumerate(theirs)})
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(config).eval()
    model.save_pretrained(tmp_path / "ner")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(tmp_path / "ner")

    ours = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    from headstart.heads.token import TokenClassificationHead as head
    optimizer = lambda params, **_: torch.optim.SGD(params, lr=0.1)  # noqa: E731
    task = TokenClassificationTask(HFTextEncoder(checkpoint=str(tmp_path / "ner")), head, torch.nn.CrossEntropyLoss(),
                                   ours, optimizer).eval()
    assert "kept its BertForTokenClassification head (labels matched by name, rows reordered" in capsys.readouterr().out
    batch = dict(BertTokenizerFast.from_pretrained(tmp_path / "ner")(["peter lives in paris"], return_tensors="pt"))
    with torch.no_grad():
        expected = model(**batch).logits[..., [theirs.index(label) for label in ours]]
        torch.testing.assert_close(task(batch), expected, atol=1e-5, rtol=0)

    other = TokenClassificationTask(HFTextEncoder(checkpoint=str(tmp_path / "ner")), head, torch.nn.CrossEntropyLoss(),
                                    ["O", "B-ORG", "I-ORG", "B-LOC", "I-LOC"], optimizer)
    line = capsys.readouterr().out.strip()
    assert other.kept_head == line and "head was re-initialised: its labels (B-PER, O, I-PER" in line and "\n" not in line


def test_an_audio_classifier_saved_by_transformers_keeps_its_projector_and_classifier_as_one_layer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Wav2Vec2ForSequenceClassification projects every frame, averages, classifies; headstart's
    head averages and classifies: the two layers compose exactly into one (labels in other order)."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    from headstart.backbones.wav2vec2 import Wav2Vec2Backbone
    from headstart.heads.mean_pool import MeanPoolHead
    from headstart.tasks.audio_classification import AudioClassificationTask

    theirs = ["yes", "no", "up"]
    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=8,
                            num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True,
                            classifier_proj_size=6, id2label=dict(enumerate(theirs)), label2id={k: i for i, k in enumerate(theirs)})
    torch.manual_seed(0)
    model = Wav2Vec2ForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path / "kws")
    ours = ["up", "yes", "no"]
    optimizer = lambda params, **_: torch.optim.SGD(params, lr=0.1)  # noqa: E731
    task = AudioClassificationTask(Wav2Vec2Backbone(checkpoint=str(tmp_path / "kws")), MeanPoolHead, torch.nn.CrossEntropyLoss(),
                                   {}, ours, optimizer).eval()
    assert "kept its Wav2Vec2ForSequenceClassification head (labels matched by name, rows reordered" in capsys.readouterr().out
    waves, lengths = torch.randn(2, 4000), torch.tensor([4000, 3000])
    waves[1, 3000:] = 0
    mask = (torch.arange(4000)[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        expected = model(input_values=waves, attention_mask=mask).logits[:, [theirs.index(label) for label in ours]]
        torch.testing.assert_close(task(waves, lengths), expected, atol=1e-5, rtol=0)


def test_eval_py_without_a_checkpoint_or_a_named_task_model_is_one_line_and_never_reaches_the_hub(tmp_path: Path) -> None:
    """No ckpt_path and no model.checkpoint on the command line: the model's default hub checkpoint
    is not what the user meant to score; one line before anything is built."""
    done = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "eval.py"), f"hydra.run.dir={tmp_path}"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: eval.py needs ckpt_path=<a headstart checkpoint>, or model.checkpoint=")
    assert "huggingface.co" not in done.stdout + done.stderr
