"""W&B runs online when an API key is configured and offline otherwise, never prompting."""

from __future__ import annotations

import netrc
import os
from pathlib import Path


def wandb_has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return False
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        auth = netrc.netrc(path).authenticators(os.environ.get("WANDB_HOST", "api.wandb.ai"))
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return auth is not None


def wandb_offline() -> bool:
    """The value for WandbLogger's ``offline``: true unless a key is configured."""
    return not wandb_has_api_key()
