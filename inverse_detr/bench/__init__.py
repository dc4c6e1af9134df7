"""The benchmark, `python -m inverse_detr.bench`: the training step's rows (`training.py`), layout
inversion's batching (`layout.py`), the named configs and arguments (`config.py`), tables and
goals (`report.py`), noise-robust timing (`timing.py`) and the matmul roofline measured at the
start (`roofline.py`). `python -m inverse_detr.bench.gpu_check` (`make gpu-check`) runs the GPU
measurements and tests in one go."""
