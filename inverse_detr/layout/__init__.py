"""Layout inversion: optimise images until a frozen DETR reports a target layout.

targets.py       layouts {(category, box)} read from COCO files, written back as canvases
zstep.py         the Z-step (Hungarian matching → pseudo-targets) and DETR's set loss toward Z
regularizers.py  blur schedule, jitter, total variation, p-norm, the valid pixel range
optimize.py      the alternating optimiser, batched (each layout its own matching and noise)
context.py       single-query visualisation and the context statistics around it
transfer.py      detections on generated images, COCO AP against the layouts, the AP matrix
plots.py         target boxes over generated images; loss curves
"""
