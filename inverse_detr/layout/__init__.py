"""Layout inversion: optimise images until a frozen detector reports a target layout.

Any detector behind `detectors.interface.Detector`: its `inversion_losses` hold its own Z-step
(DETR's Hungarian matching, the dense detectors' assignment, the R-CNNs' training pieces).

targets.py       layouts {(category, box)} read from COCO files, written back as canvases
regularizers.py  blur schedule, jitter, total variation, p-norm, the valid pixel range
optimize.py      the alternating optimiser, batched (each layout its own Z-step and noise)
settings.py      the optimiser's settings from the config's `layout` section
context.py       single-query visualisation (a DETR's queries) and the context around it
transfer.py      detections on generated images, COCO AP against the layouts, the AP matrix
plots.py         target boxes over generated images; loss curves
"""
