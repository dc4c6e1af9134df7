"""Inverse modules on disk: safetensors + JSON (no pickle), and `load_inverter` for analysis.

An export directory holds
  inverter.json          architecture (ChainSpec), the DETR it inverts, input preprocessing
  inverse.safetensors    the chain's weights
and, when the DETR was built at random for the run, `detr/` in save_pretrained form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import DetrForObjectDetection

from inverse_detr.config import REPO_ROOT
from inverse_detr.data.transforms import DetrTransform
from inverse_detr.detectors.detr import (
    detr_signature,
    forward_embeddings,
    half_precision,
    load_detr,
    local_dir,
)
from inverse_detr.errors import UserError
from inverse_detr.inverse.chain import InverseChain
from inverse_detr.inverse.embeddings import ForwardEmbeddings
from inverse_detr.inverse.spec import ChainSpec, build_chain

FORMAT = "inverse_detr.inverter"
VERSION = 1
SPEC_FILE = "inverter.json"
WEIGHTS_FILE = "inverse.safetensors"


class InverterError(UserError, ValueError):
    """An export that cannot be used as asked; the message is one line."""


def export_inverter(
    chain: InverseChain,
    spec: ChainSpec,
    transform: DetrTransform,
    detr_name: str,
    out_dir: Path,
) -> Path:
    """Write `chain` and everything needed to use it again to `out_dir`; returns `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in chain.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_FILE))
    record = {
        "format": FORMAT,
        "version": VERSION,
        "spec": spec.to_json(),
        "detr": portable_detr_name(detr_name, out_dir),
        "input": {
            "image_size": list(transform.image_size),
            "resize": transform.mode,
            "mean": transform.mean.flatten().tolist(),
            "std": transform.std.flatten().tolist(),
        },
    }
    (out_dir / SPEC_FILE).write_text(json.dumps(record, indent=2))
    return out_dir


def is_inverter(path: str | Path) -> bool:
    """Whether `path` (or its `export/`) holds an inverter export."""
    try:
        _export_dir(Path(path))
    except InverterError:
        return False
    return True


def ship_inverter(
    source: str | Path,
    target: Path,
    fp16: bool = True,
    state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Copy the export at `source` (or `source/export`) to `target`, its weights as fp16
    safetensors when `fp16` (half the size; `load_inverter` loads them back as float32). The
    recorded DETR is rewritten so that it still resolves from `target`. `state`: weights of the
    same architecture to store instead of the export's own (e.g. averaged ones). Returns
    `target`."""
    export_dir = _export_dir(Path(source))
    record = _read_record(export_dir)
    state = _read_weights(export_dir) if state is None else state
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    target.mkdir(parents=True, exist_ok=True)
    save_file(half_precision(state) if fp16 else state, str(target / WEIGHTS_FILE))
    record["detr"] = portable_detr_name(_resolve_detr(record["detr"], export_dir), target)
    (target / SPEC_FILE).write_text(json.dumps(record, indent=2))
    return target


def portable_detr_name(name: str, out_dir: Path) -> str:
    """What to record for the DETR so that the export loads from any working directory: a
    path relative to the export stays; a local directory becomes relative to the repository
    root when inside it (as `checkpoints/shapes-detr`), else absolute; hub ids stay."""
    if not Path(name).is_absolute() and (out_dir / name).is_dir():
        return name
    local = local_dir(name)
    if local is None:
        return name
    local = local.resolve()
    return str(local.relative_to(REPO_ROOT)) if local.is_relative_to(REPO_ROOT) else str(local)


@dataclass
class Inverter:
    """A frozen DETR and the inverse chain trained against it, ready for analysis."""

    detr: DetrForObjectDetection
    chain: InverseChain
    spec: ChainSpec | None  # None for a chain still in training (not exported)
    transform: DetrTransform

    def to(self, device: torch.device | str) -> Inverter:
        self.detr.to(device)
        self.chain.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.chain.parameters()).device

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> ForwardEmbeddings:
        """images: (B, 3, H, W) RGB in [0, 1] → every stage's embedding, preprocessed as in
        training (resize to the training size, the DETR's normalisation)."""
        pixels, mask, _ = self.transform.tensors(images.to(self.device))
        return forward_embeddings(self.detr, pixels, mask)

    @torch.no_grad()
    def reconstruct(
        self,
        images: torch.Tensor,
        stage: str = "backbone",
        layer: int | None = None,
        soft: bool | None = None,
    ) -> torch.Tensor:
        """images: (B, 3, H, W) RGB in [0, 1] → (B, 3, H, W) reconstruction in [0, 1].

        stage: backbone | encoder | decoder | head;  layer: an intermediate encoder/decoder
        layer (default: the stage's own output);  soft: the head's class code (see InverseHead).
        """
        pixels, mask, plan = self.transform.tensors(images.to(self.device))
        emb = forward_embeddings(self.detr, pixels, mask)
        out = self.chain.reconstruct(emb, stage, layer=layer, soft=soft)
        return self.transform.restore(out, plan, tuple(images.shape[-2:]))


def _export_dir(path: Path) -> Path:
    for candidate in (path, path / "export"):
        if (candidate / SPEC_FILE).is_file():
            return candidate
    raise InverterError(f"{path}: no {SPEC_FILE} here or in {path / 'export'}")


def _read_record(export_dir: Path) -> dict:
    try:
        record = json.loads((export_dir / SPEC_FILE).read_text())
    except json.JSONDecodeError as err:
        raise InverterError(f"{export_dir / SPEC_FILE}: not valid JSON ({err})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise InverterError(f"{export_dir / SPEC_FILE}: not an inverse_detr export")
    missing = [key for key in ("spec", "detr", "input") if key not in record]
    if missing:
        raise InverterError(f"{export_dir / SPEC_FILE}: missing {', '.join(missing)}")
    if record.get("version", 0) > VERSION:
        raise InverterError(
            f"{export_dir / SPEC_FILE}: version {record['version']} is newer "
            f"than this inverse_detr reads ({VERSION}); upgrade inverse_detr"
        )
    return record


def _read_weights(export_dir: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(export_dir / WEIGHTS_FILE))
    except (OSError, SafetensorError) as err:
        raise InverterError(
            f"{export_dir / WEIGHTS_FILE}: cannot read the weights ({err})"
        ) from None


def _resolve_detr(recorded: str, export_dir: Path) -> str:
    """A recorded relative directory is relative to the export, else to the repository (what
    `portable_detr_name` wrote), never to the working directory; hub ids stay as they are."""
    if Path(recorded).is_absolute():
        return recorded
    for base in (export_dir, REPO_ROOT):
        if (base / recorded).is_dir():
            return str(base / recorded)
    return recorded


def check_compatible(spec: ChainSpec, detr: DetrForObjectDetection, where: Path) -> None:
    """One-line InverterError naming the first dimension where the chain and DETR disagree."""
    for key, value in detr_signature(detr).items():
        expected = getattr(spec, key)
        if expected != value:
            raise InverterError(
                f"{where}: inverse modules were trained for a DETR with {key}="
                f"{expected}, but the given DETR has {key}={value}"
            )


def load_inverter(
    path: str | Path,
    detr: str | Path | DetrForObjectDetection | None = None,
    device: torch.device | str = "cpu",
) -> Inverter:
    """Load an export (or a run folder holding `export/`) and the DETR it was trained against.

    detr: overrides the recorded DETR (a hub id, a directory, or a loaded model).
    Reads safetensors and JSON only: nothing is unpickled.
    """
    export_dir = _export_dir(local_dir(path) or Path(path).expanduser())  # also from the repo root
    record = _read_record(export_dir)
    try:
        spec = ChainSpec.from_json(record["spec"])
    except (KeyError, TypeError, ValueError) as err:
        raise InverterError(f"{export_dir / SPEC_FILE}: bad inverse-chain spec ({err})") from None
    if isinstance(detr, DetrForObjectDetection):
        detr.eval()  # targets and reconstructions come from DETR without dropout
    else:
        detr = load_detr(detr if detr is not None else _resolve_detr(record["detr"], export_dir))
    check_compatible(spec, detr, export_dir)
    chain = build_chain(spec)
    state = _read_weights(export_dir)
    try:
        chain.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise InverterError(
            f"{export_dir / WEIGHTS_FILE}: weights do not fit the recorded architecture ({first})"
        ) from None
    data = record["input"]
    transform = DetrTransform(tuple(data["image_size"]), data["resize"], data["mean"], data["std"])
    return Inverter(detr, chain.eval(), spec, transform).to(device)
