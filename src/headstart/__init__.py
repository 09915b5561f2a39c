"""headstart: train transformer models on audio, vision and text tasks with Lightning + Hydra."""

__version__ = "0.1.0"
