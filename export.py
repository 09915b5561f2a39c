"""Shim: ``python export.py ckpt_path=...`` runs headstart.export (see README)."""
from headstart.export import main

main()
