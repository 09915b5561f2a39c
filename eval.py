"""Shim: ``python eval.py ckpt_path=...`` runs headstart.eval (see README)."""
from headstart.eval import main

main()
