# Targets: install test lint train bench. PYTHON may point at a virtual environment's python.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install test lint format train bench

# torch/torchvision first, pinned to the releases these machines carry on disk (a CPU-capable
# CUDA build); on your own GPU machine any torch>=2.4 with a matching torchvision works.
install:
	$(PIP) install "torch==2.14.1" "torchvision==0.29.1"
	$(PIP) install -e ".[dev]"

test:
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format:
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

train:
	$(PYTHON) -m inverse_detr.train

bench:
	$(PYTHON) -m inverse_detr.bench
