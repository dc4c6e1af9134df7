"""The benchmark, `python -m inverse_detr.bench`: the training step's rows (`training.py`), layout
inversion's batching (`layout.py`), the named configs and arguments (`config.py`), tables and
goals (`report.py`) and noise-robust timing (`timing.py`)."""
