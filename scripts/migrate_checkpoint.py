"""``python -m scripts.migrate_checkpoint <old.ckpt> [--out new.ckpt] [--dry-run]``.

Rewrites the headstart meta of a checkpoint written before checkpoints stored the overrides that
composed them (meta format 1), after printing what it found: the overrides it derived from the
stored config, the stored keys the installed conf/ has no place for (left out), and any stored
Hydra key the installed conf/ does not compose (then nothing is written). The weights are kept
as they are. The stored config is compared, never instantiated (src/headstart/run/migrate.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from headstart.run.config import register_resolvers
from headstart.run.errors import ConfigError
from headstart.run.migrate import migrate
from headstart.run.safe_load import safe_load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", help="where to write (default: <name>.v2.ckpt next to it)")
    parser.add_argument("--dry-run", action="store_true", help="print what was found, write nothing")
    args = parser.parse_args(argv)
    register_resolvers()
    path = Path(args.checkpoint)
    try:
        checkpoint = safe_load(path)
        found = migrate(checkpoint.get("headstart") or {}, str(path))
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{path}: overrides derived from the stored config ({len(found.overrides)}):")
    for override in found.overrides:
        print(f"  {override}")
    if found.not_carried:
        print(f"left out (the installed conf/ has no such key): {', '.join(found.not_carried)}")
    if found.conflicts:
        print(f"error: {path}: its stored config names code the installed conf/ does not compose: "
              f"{'; '.join(found.conflicts)}; nothing written", file=sys.stderr)
        return 1
    if args.dry_run:
        return 0
    out = Path(args.out) if args.out else path.with_suffix(".v2.ckpt")
    checkpoint["headstart"] = found.meta
    torch.save(checkpoint, out)
    print(f"written: {out} (eval.py ckpt_path={out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
