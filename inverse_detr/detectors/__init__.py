"""Detectors and what the rest of the package needs of them.

`detr.py`: loading a Hugging Face DETR (hub id or local directory), its taps into the forward
pass (`forward_embeddings`), its loss and normalisation. `build.py`: config sections → a DETR,
its input transform and the inverse chain sized for it. Nothing here imports Lightning.
"""
