"""Shim: ``python train.py ...`` runs headstart.train (see README)."""
from headstart.train import main

main()
