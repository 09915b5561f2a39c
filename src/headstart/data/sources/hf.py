"""Load splits of a `datasets` dataset: a hub name, or a local ``save_to_disk`` directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headstart.data.errors import DataError


def load_hf_splits(
    name: str, subset: str | None, splits: dict[str, str | None], val_fraction: float, seed: int
) -> dict[str, Any]:
    """Our split name ("train", "val", "test") -> a ``datasets.Dataset``.

    ``splits`` maps our names to the dataset's (None: absent). Without a validation split,
    ``val_fraction`` of train is held out with ``seed``.
    """
    import datasets

    try:
        if Path(name).is_dir():
            loaded = datasets.load_from_disk(name)
        else:
            loaded = datasets.load_dataset(name, subset)
    except Exception as err:  # hub/network failures surface as many exception types
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise DataError(
            f"could not load dataset '{name}' ({first}); without network access point data.path "
            f"(or the dataset name) at a local directory written by datasets' save_to_disk"
        ) from err
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    tables: dict[str, Any] = {}
    for ours, theirs in splits.items():
        if theirs is None:
            continue
        if theirs not in loaded:
            if ours == "train":
                raise DataError(f"{name}: no split '{theirs}' (splits: {list(loaded)})")
            continue
        tables[ours] = loaded[theirs]
    if "train" not in tables:
        raise DataError(f"{name}: no training split configured")
    if "val" not in tables:
        parts = tables["train"].train_test_split(test_size=val_fraction, seed=seed)
        tables["train"], tables["val"] = parts["train"], parts["test"]
    return tables
