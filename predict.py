"""Shim: ``python predict.py ckpt_path=... inputs=...`` runs headstart.predict (see README)."""
from headstart.predict import main

main()
