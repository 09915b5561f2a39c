"""Write train/val manifests for the Free Spoken Digit Dataset (``{digit}_{speaker}_{take}.wav``).

    python scripts/prepare_fsdd.py ../shared/data/audio/fsdd/recordings out/fsdd --held-out-speaker theo
    python train.py task=audio_classification data.source=manifest \
        data.train_path=out/fsdd/train.jsonl data.val_path=out/fsdd/val.jsonl model.preset=tiny
    python train.py task=speech_recognition data.source=manifest \
        data.train_path=out/fsdd/train.jsonl data.val_path=out/fsdd/val.jsonl model.preset=tiny

Each row: {"path", "label" (the digit), "text" (its English word), "speaker", "duration"}.
Validation is one held-out speaker (``--held-out-speaker``) or a take range (``--val-takes 5-9``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import soundfile as sf

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recordings", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--held-out-speaker", default=None)
    parser.add_argument("--val-takes", default=None, help="inclusive take range held out, e.g. 5-9")
    args = parser.parse_args()
    low, high = (int(x) for x in args.val_takes.split("-")) if args.val_takes else (None, None)
    rows: dict[str, list[dict]] = {"train": [], "val": []}
    for path in sorted(args.recordings.glob("*.wav")):
        digit, speaker, take = path.stem.split("_")
        info = sf.info(str(path))
        held = speaker == args.held_out_speaker if args.held_out_speaker else low <= int(take) <= high
        rows["val" if held else "train"].append({
            "path": str(path.resolve()), "label": digit, "text": WORDS[int(digit)], "speaker": speaker,
            "duration": round(info.frames / info.samplerate, 4),
        })  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    for split, items in rows.items():
        (args.out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
        seconds = sum(r["duration"] for r in items)
        print(f"{split}: {len(items)} clips, {seconds / 60:.1f} min -> {args.out / f'{split}.jsonl'}")


if __name__ == "__main__":
    main()
