"""DataModules for audio classification and CTC speech recognition.

source -> duration filter -> targets (class ids / CTC label ids) -> AudioDataset ->
length-grouped batches (DDP-aware) -> padded batch with lengths. The sample rate, and for
speech recognition the vocabulary a checkpoint was trained with, come from the model
through ``configure``; a vocabulary built here goes back to the model (``attach``) so it is
saved in every checkpoint and eval/predict reuse it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import Dataset, Sampler

from headstart.data.audio_batches import (
    AudioDataset,
    DecodedClips,
    Kind,
    PredictAudioDataset,
    collate_audio,
    collate_chunks,
)
from headstart.data.audio_io import AudioFileError
from headstart.data.base import DataModule
from headstart.data.ctc_vocab import CtcVocab, UnknownCharacterError
from headstart.data.errors import DataError
from headstart.data.inputs import expand_inputs
from headstart.data.labels import check_spellings, clean_label
from headstart.data.samplers import LengthGroupedBatchSampler
from headstart.data.sources.audio import (
    AUDIO_EXTENSIONS,
    AudioItem,
    Splits,
    class_folder,
    folder_splits,
    hf_splits,
    manifest_splits,
    probe_duration,
    synthetic_splits,
    transcript_folder,
)  # fmt: skip
from headstart.data.splits import hold_out, pick_source, require_hf_name
from headstart.data.synthetic.audio import CLASS_NAMES, LEXICON, make_audio_classification, make_spelled_words


class AudioDataModule(DataModule):
    """What both audio tasks share: sources, duration filters, bucketing, prediction chunks.

    source: synthetic | folder | manifest | hf. Manifests name the file in ``path_column``
    (relative to the manifest), hf sets in ``audio_column``. File sources read ``path`` (a folder with
    train/ val/ [test/], one tree or manifest split by ``val_fraction``) or explicit
    ``train_path`` / ``val_path`` / ``test_path``.
    min_duration, max_duration: seconds; clips outside are dropped (``duration_filter=drop``,
    counts logged) or are bad input (``error``: named, or skipped under ``on_error=skip``).
    A clip whose decoded length breaks the limits (e.g. a wrong manifest duration) is bad input.
    bucket_by_length: batches of similar duration (less padding); eval order is then permuted.
    predict_chunk_seconds: predict.py cuts longer files into chunks of this length.
    cache_mb: decoded clips are kept in memory up to this many MiB, so epochs after the first
    read no file (:class:`DecodedClips`). Each process keeps its share: the main process all of
    it, each persistent worker ``cache_mb / num_workers`` (over the epochs a worker reads every
    clip); workers that restart every epoch keep none. 0 turns it off.
    """

    task_name = "audio"  # named in data errors

    kind: Kind = "classification"

    def __init__(
        self,
        source: Literal["synthetic", "folder", "manifest", "hf"] = "synthetic",
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        val_fraction: float = 0.1,
        min_duration: float = 0.0,
        max_duration: float | None = None,
        duration_filter: Literal["drop", "error"] = "drop",
        audio_column: str = "audio",
        path_column: str = "path",
        target_column: str = "target",
        duration_column: str | None = "duration",
        hf_name: str | None = None,
        hf_subset: str | None = None,
        hf_splits: dict[str, str | None] | None = None,
        synthetic_sizes: dict[str, int] | None = None,
        bucket_by_length: bool = True,
        bucket_size_multiplier: int = 50,
        predict_chunk_seconds: float = 30.0,
        cache_mb: float = 1024.0,
        **loader: Any,
    ) -> None:
        super().__init__(**loader)
        self.source = source
        self.paths = {"path": path, "train_path": train_path, "val_path": val_path, "test_path": test_path}
        self.val_fraction = val_fraction
        self.min_duration, self.max_duration, self.duration_filter = min_duration, max_duration, duration_filter
        self.columns = {"audio_column": audio_column, "target_column": target_column, "duration_column": duration_column}
        self.path_column = path_column
        self.hf = {"name": hf_name or path, "subset": hf_subset,
                   "splits": dict(hf_splits or {"train": "train", "val": "validation", "test": "test"})}  # fmt: skip
        self.synthetic_sizes = dict(synthetic_sizes or {"train": 800, "val": 200, "test": 200})
        self.bucket_by_length, self.bucket_size_multiplier = bucket_by_length, bucket_size_multiplier
        self.predict_chunk_seconds = predict_chunk_seconds
        if cache_mb < 0:
            raise ValueError(f"data.cache_mb={cache_mb:g}: the decoded-clip budget in MiB must be >= 0 (0 turns it off)")
        self.cache_mb = cache_mb
        self.decoded_clips = DecodedClips(self._cache_bytes())
        self.collate = partial(collate_audio, kind=self.kind)
        self.splits: Splits = {}
        self.class_names: list[str] | None = None
        self.dropped: dict[str, int] = {}

    # ---- subclass hooks -----------------------------------------------------------------------
    def _hf_splits(self) -> Splits:
        self.class_names, splits = hf_splits(
            require_hf_name(self.hf["name"]), self.hf["subset"], self.hf["splits"], self.columns["audio_column"],
            self.columns["target_column"], self.val_fraction, self.seed,
        )  # fmt: skip
        return splits

    def _synthetic(self) -> Splits:
        raise NotImplementedError

    def _folder_listing(self) -> Callable[[Path], list[AudioItem]]:
        raise NotImplementedError

    def _prepare_targets(self) -> None:
        """Set labels / vocabulary from the listed splits."""

    def _targets(self, split: str, items: list[AudioItem]) -> list[Any]:
        raise NotImplementedError

    def _crop(self, train: bool) -> int | None:
        return None

    # ---- listing ------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return int(self.spec.get("sample_rate", 16000))

    def _readers(self) -> dict[str, Callable[[], Splits]]:
        """``data.source`` -> the reader listing its splits (a subclass may replace one)."""
        return {
            "synthetic": self._synthetic,
            "folder": lambda: folder_splits(self.paths, self._folder_listing()),
            "manifest": lambda: manifest_splits(self.paths, **{**self.columns, "audio_column": self.path_column},
                                                on_error=self.on_error),
            "hf": self._hf_splits,
        }

    def _load_splits(self) -> None:
        if self.splits:
            return
        splits = pick_source(self.source, self._readers(), self.task_name)
        if "val" not in splits:
            splits["train"], splits["val"] = hold_out(splits["train"], self.val_fraction, self.seed)
        self.splits = {split: self._filter(split, items) for split, items in splits.items()}
        if not self.splits["train"]:
            raise DataError("no training clips left after the duration filter (data.min_duration / data.max_duration)")
        self._prepare_targets()

    def _filter(self, split: str, items: list[AudioItem]) -> list[AudioItem]:
        """Probe unknown durations; drop (and count) or flag clips outside the duration limits."""
        kept, dropped = [], 0
        for item in items:
            if item.error is None and item.duration is None:
                try:
                    item.duration = probe_duration(item)
                except (AudioFileError, DataError) as err:
                    item.error = str(err)
            if item.error is None and not self._within_limits(item.duration):
                if self.duration_filter == "drop":
                    dropped += 1
                    continue
                item.error = f"{item.where}: clip is {item.duration:.2f} s, outside {self._limits_text()}"
            if item.error is not None and self.on_error == "raise":
                raise DataError(item.error)
            kept.append(item)
        self.dropped[split] = dropped
        if dropped:
            rank_zero_info(f"data: dropped {dropped} of {len(items)} {split} clips outside {self._limits_text()}")
        return kept

    def _within_limits(self, duration: float | None) -> bool:
        duration = duration or 0.0
        return duration >= self.min_duration and (self.max_duration is None or duration <= self.max_duration)

    def _limits_text(self) -> str:
        high = f"{self.max_duration:g} s" if self.max_duration is not None else "any length"
        return f"data.min_duration={self.min_duration:g} s .. data.max_duration={high}"

    def _sample_limits(self) -> tuple[int, int | None]:
        low = max(int(self.min_duration * self.sample_rate), int(self.spec.get("receptive_field", 400)))
        high = None if self.max_duration is None else int(self.max_duration * self.sample_rate * 1.01) + 1
        return low, high

    # ---- datasets and loaders ---------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":  # predict.py's files arrive through set_predict_inputs; no data listing
            return
        self._load_splits()
        if stage in (None, "fit", "validate", "test"):
            self.train_set = self._dataset("train", train=True)
            self.val_set = self._dataset("val", train=False)
            if "test" in self.splits:
                self.test_set = self._dataset("test", train=False)

    def _cache_bytes(self) -> int:
        """This process's share of ``cache_mb`` (see the class docstring)."""
        if self.num_workers > 0 and not self.persistent_workers:
            return 0
        return int(self.cache_mb * 2**20) // max(1, self.num_workers)

    def _dataset(self, split: str, train: bool) -> AudioDataset:
        items = self.splits[split]
        normalize = bool(self.spec.get("normalize", True))
        return AudioDataset(
            items, self._targets(split, items), self.sample_rate, self._sample_limits(), self.on_error,
            crop=self._crop(train), normalize=normalize, cache=self.decoded_clips, split=split,
        )  # fmt: skip

    def batch_sampler(self, dataset: Dataset, train: bool) -> Sampler | None:
        """Length-grouped batches for train/val/test; prediction keeps input order (None)."""
        if not self.bucket_by_length or not isinstance(dataset, AudioDataset):
            return None
        world, rank = self.world
        return LengthGroupedBatchSampler(
            dataset.lengths(), self.batch_size if train else self.eval_batch_size, shuffle=train, seed=self.seed,
            drop_last=self.drop_last and train, num_replicas=world, rank=rank,
            bucket_size_multiplier=self.bucket_size_multiplier,
        )  # fmt: skip

    def set_predict_inputs(self, inputs: str | Sequence[str]) -> None:
        """Audio files to predict on (a file, a folder or a glob); long files are chunked."""
        self.predict_set = PredictAudioDataset(expand_inputs(inputs, AUDIO_EXTENSIONS), self.sample_rate, self.on_error)

    def predict_dataloader(self) -> Any:
        loader = self._loader(self.predict_set, train=False, stateful=False)
        loader.collate_fn = partial(
            collate_chunks, chunk_samples=int(self.predict_chunk_seconds * self.sample_rate),
            min_samples=self._sample_limits()[0], normalize=bool(self.spec.get("normalize", True)),
        )  # fmt: skip
        return loader


class AudioClassificationDataModule(AudioDataModule):
    """Clips with a class label. max_seconds: random crop length in training (None: whole clips).

    Class names: the synthetic patterns, the folder names, the manifest's label values, or
    the dataset's ClassLabel names (sorted values otherwise).
    """

    task_name = "audio classification"  # named in data errors

    kind: Kind = "classification"

    def __init__(
        self,
        max_seconds: float | None = None,
        label_column: str = "label",
        synthetic_num_classes: int = 6,
        synthetic_min_seconds: float = 0.5,
        synthetic_max_seconds: float = 1.0,
        case_sensitive_labels: bool = False,
        **common: Any,
    ) -> None:
        super().__init__(target_column=label_column, **common)
        self.max_seconds = max_seconds
        self.case_sensitive_labels = case_sensitive_labels
        self.synthetic = {"num_classes": synthetic_num_classes, "min_duration": synthetic_min_seconds,
                          "max_duration": synthetic_max_seconds}  # fmt: skip
        self.labels: list[str] = []

    def _synthetic(self) -> Splits:
        make = partial(make_audio_classification, **self.synthetic, sample_rate=16000)
        splits = synthetic_splits(make, self.synthetic_sizes, self.seed, "label")
        for items in splits.values():
            for item in items:
                item.target = CLASS_NAMES[item.target]
        self.class_names = list(CLASS_NAMES[: self.synthetic["num_classes"]])
        return splits

    def _folder_listing(self) -> Callable[[Path], list[AudioItem]]:
        return class_folder

    def _prepare_targets(self) -> None:
        if self.class_names is not None:  # set by the reader: the synthetic set's or a ClassLabel's names
            self.labels = list(self.class_names)
        else:  # class names as data/labels.py reads them: "yes " is "yes", Yes / yes an error
            raw = [item.target for item in self.splits["train"] if item.error is None]
            where = str(self.paths["train_path"] or self.paths["path"] or "the training labels")
            check_spellings(raw, where, self.case_sensitive_labels)
            for items in self.splits.values():
                for item in items:
                    if item.target is not None:
                        item.target = clean_label(item.target)
            self.labels = sorted({str(item.target) for item in self.splits["train"] if item.error is None})

    def _targets(self, split: str, items: list[AudioItem]) -> list[Any]:
        index = {name: i for i, name in enumerate(self.labels)}
        targets = []
        for item in items:
            if item.error is None and str(item.target) not in index:
                item.error = f"{item.where}: class '{item.target}' is not among the training classes {self.labels}"
                if self.on_error == "raise":
                    raise DataError(item.error)
            targets.append(index.get(str(item.target), -1))
        return targets

    def _crop(self, train: bool) -> int | None:
        return int(self.max_seconds * self.sample_rate) if train and self.max_seconds else None

    def info(self) -> dict[str, Any]:
        self._load_splits()
        return {"labels": list(self.labels)}


class SpeechRecognitionDataModule(AudioDataModule):
    """Clips with a transcript, encoded with a character vocabulary for CTC.

    The vocabulary, in order of precedence: the one the model was trained with (a reloaded
    checkpoint), ``vocab_path`` (an HF-style vocab.json; characters outside it are errors),
    a fine-tuned CTC checkpoint's own (``use_pretrained_vocab``), or built from the training
    transcripts after normalisation (``text_case``, ``strip_punctuation``, ``keep_chars``).
    """

    task_name = "speech recognition"  # named in data errors

    kind: Kind = "ctc"

    def __init__(
        self,
        vocab_path: str | None = None,
        use_pretrained_vocab: bool = True,
        text_case: Literal["lower", "upper", "keep"] | None = "lower",
        strip_punctuation: bool = True,
        keep_chars: str = "'",
        synthetic_lexicon: Sequence[str] = LEXICON,
        synthetic_max_words: int = 3,
        text_column: str = "text",
        **common: Any,
    ) -> None:
        super().__init__(target_column=text_column, **common)
        self.vocab_path, self.use_pretrained_vocab = vocab_path, use_pretrained_vocab
        self.normalisation = {"strip_punctuation": strip_punctuation, "keep": keep_chars}
        self.text_case = text_case
        self.synthetic = {"lexicon": tuple(synthetic_lexicon), "max_words": synthetic_max_words}
        self.vocab: CtcVocab | None = None
        self.vocab_given = False

    def configure(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Pick or build the vocabulary and hand it to the model, which saves it in checkpoints."""
        super().configure(spec)
        if spec.get("ctc_vocab"):  # a reloaded checkpoint: its labels, without listing the data yet
            self.vocab = CtcVocab.from_dict(spec["ctc_vocab"], **self.normalisation)
            self.vocab_given = True
        else:
            self._load_splits()
        assert self.vocab is not None
        return {"ctc_vocab": dict(self.vocab.token_to_id)}

    def _synthetic(self) -> Splits:
        make = partial(make_spelled_words, lexicon=self.synthetic["lexicon"], max_words=self.synthetic["max_words"])
        return synthetic_splits(make, self.synthetic_sizes, self.seed, "text")

    def _folder_listing(self) -> Callable[[Path], list[AudioItem]]:
        return transcript_folder

    def _prepare_targets(self) -> None:
        if self.vocab is not None:  # the checkpoint's, set by configure
            return
        pretrained = self.spec.get("pretrained_vocab") if self.use_pretrained_vocab else None
        if self.vocab_path is not None:
            if not Path(self.vocab_path).is_file():
                raise DataError(f"{self.vocab_path}: vocabulary file not found (data.vocab_path)")
            self.vocab = CtcVocab.load(self.vocab_path, case=self.text_case, **self.normalisation)
            self.vocab_given = True
        elif pretrained is not None:  # a fine-tuned CTC checkpoint keeps its head with its own labels
            self.vocab = CtcVocab.from_dict(pretrained, **self.normalisation)
            self.vocab_given = True
        else:
            texts = [str(item.target) for item in self.splits["train"] if item.error is None and item.target]
            self.vocab = CtcVocab.build(texts, case=self.text_case or "keep", **self.normalisation)

    def _targets(self, split: str, items: list[AudioItem]) -> list[Any]:
        """(label ids, normalised text) per item; empty or unencodable transcripts are bad input."""
        assert self.vocab is not None
        strict = self.vocab_given or split == "train"
        targets: list[Any] = []
        for item in items:
            target = None
            if item.error is None:
                try:
                    target = self._encode(item, strict)
                except (DataError, UnknownCharacterError) as err:
                    item.error = str(err) if str(err).startswith(item.where) else f"{item.where}: {err}"
                    if self.on_error == "raise":
                        raise DataError(item.error) from err
            targets.append(target)
        return targets

    def _encode(self, item: AudioItem, strict: bool) -> tuple[list[int], str]:
        assert self.vocab is not None
        text = self.vocab.normalize(str(item.target or ""))
        if not text:
            raise DataError(f"{item.where}: empty transcript")
        return self.vocab.encode(text, strict=strict), text

    def info(self) -> dict[str, Any]:
        self._load_splits()
        assert self.vocab is not None
        return {"vocab": list(self.vocab.tokens)}
