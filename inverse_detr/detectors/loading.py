"""`load_detector(name_or_dir)`: the one place that decides which adapter a detector gets.

A directory with `detector.json` is one of the project's classic detectors (its spec; weights in
`model.safetensors`); a directory with `config.json`, or a hub id, is a Hugging Face DETR.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from inverse_detr.detectors.classic import FAMILIES, ClassicDetector, ClassicSpec, build_classic
from inverse_detr.detectors.detr import (
    half_precision,
    image_normalization,
    load_detr,
    local_dir,
    looks_like_path,
)
from inverse_detr.detectors.detr_detector import DetrDetector
from inverse_detr.detectors.interface import Detector
from inverse_detr.errors import UserError

SPEC_FILE = "detector.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "inverse_detr.detector"
KNOWN = (
    f"a project detector directory ({SPEC_FILE}: {', '.join(FAMILIES)}) "
    "or a DETR (config.json or a hub id)"
)


class DetectorLoadError(UserError, RuntimeError):
    """A detector that cannot be loaded; the message is one line naming the file or mismatch."""


def load_detector(name_or_dir: str | os.PathLike, device: torch.device | str = "cpu") -> Detector:
    """The detector at `name_or_dir` behind the `Detector` interface, frozen, in eval mode."""
    name = str(name_or_dir)
    path = local_dir(name)
    if path is not None and (path / SPEC_FILE).is_file():
        detector = _load_classic(path)
    elif (path is not None and (path / "config.json").is_file()) or (
        path is None and not looks_like_path(name)
    ):
        detector = DetrDetector(load_detr(name), *image_normalization(name))
    elif path is None:
        raise DetectorLoadError(f"detector not found: {name}; expected {KNOWN}")
    else:
        raise DetectorLoadError(f"{path}: not a detector directory; expected {KNOWN}")
    detector.module.to(device).eval().requires_grad_(False)
    return detector


def save_detector(detector: ClassicDetector, directory: str | os.PathLike, fp16: bool = True):
    """Write `detector.json` and the weights (fp16 storage by default); returns the folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in detector.module.state_dict().items()}
    save_file(half_precision(state) if fp16 else state, str(directory / WEIGHTS_FILE))
    record = {"format": FORMAT, "version": 1, "spec": detector.spec.to_json()}
    (directory / SPEC_FILE).write_text(json.dumps(record, indent=2))
    return directory


def _load_classic(path: Path) -> ClassicDetector:
    spec = _read_spec(path / SPEC_FILE)
    model = build_classic(spec)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise DetectorLoadError(f"{weights}: missing (the detector's weights)")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise DetectorLoadError(f"{weights}: unreadable safetensors ({err})") from None
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        raise DetectorLoadError(
            f"{weights} does not fit the {spec.family} in {SPEC_FILE}: missing {missing[:2]}, "
            f"unexpected {unexpected[:2]}, other shape {wrong[:2]}"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return ClassicDetector(model, spec)


def _read_spec(file: Path) -> ClassicSpec:
    try:
        record = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DetectorLoadError(f"{file}: unreadable ({err})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or "spec" not in record:
        raise DetectorLoadError(f"{file}: not an inverse_detr detector record (format {FORMAT})")
    try:
        return ClassicSpec.from_json(record["spec"])
    except (TypeError, ValueError) as err:
        raise DetectorLoadError(f"{file}: {err}") from None
