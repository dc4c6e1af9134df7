"""Detectors and what the rest of the package needs of them.

`interface.py`: the `Detector` protocol every detector is used through (`predict`,
`raw_outputs`, categories, normalisation) and its `Prediction`. `loading.py`: `load_detector`,
the one place that picks an adapter (`detr_detector.py` for a Hugging Face DETR,
`classic.py` for the torchvision RetinaNet / FCOS / Faster R-CNN / Mask R-CNN). `detr.py`:
loading a DETR, its taps into the forward pass (`forward_embeddings`), loss and normalisation,
which feature inversion uses directly. `build.py`: config sections → a DETR, its input transform
and the inverse chain sized for it. Nothing here imports Lightning.
"""
