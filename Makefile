# Targets: install test lint train bench gpu-check detectors. PYTHON may point at a virtual environment's python.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install test lint format train bench gpu-check detectors

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

# On a CUDA machine (≤ 5 min): the coco_r50 bench (bf16+channels_last), the layout bench,
# a 1-GPU bf16 + compile training smoke run and pytest -m gpu; writes runs/gpu-check.json.
# Without CUDA it says so and exits 0.
gpu-check:
	$(PYTHON) -m inverse_detr.bench.gpu_check $(ARGS)

# The four classic detectors on the planted shapes world: train each (30 min on 2 CPU cores at
# most; on a GPU machine add ARGS="trainer=gpu"), store it in checkpoints/ (fp16) and re-measure
# the stored weights. One family only: make detectors DETECTORS=fcos
DETECTORS ?= retinanet fcos faster_rcnn mask_rcnn
detectors:
	set -e; for d in $(DETECTORS); do \
	  name=shapes-$$(echo $$d | tr _ -); \
	  $(PYTHON) -m inverse_detr.train experiment=shapes_$$d run_name=$$name logger=csv $(ARGS); \
	  $(PYTHON) -m inverse_detr ship runs/$$name/detector checkpoints/$$name; \
	  $(PYTHON) -m inverse_detr.evaluate model=checkpoints/$$name; \
	done
