"""The frozen DETR's embeddings, kept per image so that later epochs skip its forward pass.

A frozen DETR on a deterministic input pipeline gives every image the same embeddings every
epoch. A store keeps, per image id, only the fields the trained stages read (`STAGE_FIELDS`):
in RAM (`RamStore`) or memory-mapped on disk (`DiskStore`, which outlives the process and so
serves a resumed run). Storage may be fp16/bf16 (half the bytes; the error is in BENCHMARKS.md).
A store carries a key (the DETR's weights hash, the data config, the fields, the dtype); a disk
store whose key changed is emptied and refilled.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from inverse_detr.inverse.embeddings import ForwardEmbeddings

# what each inverse stage reads of the forward pass: its input and its target
STAGE_FIELDS = {
    "backbone": ("backbone",),
    "encoder": ("encoder", "backbone"),
    "decoder": ("decoder", "encoder"),
    "head": ("logits", "boxes", "decoder"),
}
FIELDS = ("backbone", "encoder", "decoder", "logits", "boxes")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def weights_hash(model: torch.nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of `model`'s state (buffers included):
    the identity of a DETR's weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        t = tensor.detach().to("cpu").reshape(-1).contiguous()  # channels_last 1×1 convs too
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def needed_fields(stages: Sequence[str]) -> tuple[str, ...]:
    """The fields the given stages read, in `FIELDS` order."""
    wanted = {f for s in stages for f in STAGE_FIELDS[s]}
    return tuple(f for f in FIELDS if f in wanted)


def field_of(emb: ForwardEmbeddings, name: str) -> torch.Tensor:
    """(B, ...) one field: backbone/encoder (B, HW, d), decoder (B, Q, d), logits (B, Q, C+1),
    boxes (B, Q, 4)."""
    return getattr(emb, name)


def shapes_of(emb: ForwardEmbeddings) -> dict[str, tuple[int, ...]]:
    """Each field's shape for one image, read off a forward pass."""
    return {f: tuple(field_of(emb, f).shape[1:]) for f in FIELDS}


def bytes_per_image(shapes: dict, fields: Sequence[str], dtype: str) -> int:
    """Bytes one image takes in a store of `fields` stored as `dtype`."""
    itemsize = torch.empty(0, dtype=DTYPES[dtype]).element_size()
    return sum(int(np.prod(shapes[f])) for f in fields) * itemsize


class EmbeddingStore:
    """Rows of `fields` per image id; `lookup` answers only when every id is present."""

    def __init__(self, fields: Sequence[str], dtype: str, key: dict) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"unknown cache dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
        self.fields = tuple(fields)
        self.dtype = dtype
        self.key = key
        self.hits = 0  # images answered
        self.misses = 0  # images stored

    def lookup(self, ids: Sequence[int]) -> dict[str, torch.Tensor] | None:
        """{field: (B, ...) float32 tensor} for `ids`, or None when any id is not stored."""
        rows = self._rows(ids)
        if rows is None:
            return None
        self.hits += len(ids)
        return {f: torch.stack([r[f] for r in rows]).float() for f in self.fields}

    def store(self, ids: Sequence[int], emb: ForwardEmbeddings) -> None:
        """Keep the fields of `emb` (batch order = `ids`) for every id not stored yet."""
        values = {f: field_of(emb, f).detach().to("cpu", DTYPES[self.dtype]) for f in self.fields}
        for row, image_id in enumerate(ids):
            if not self._has(image_id):
                self._put(image_id, {f: v[row] for f, v in values.items()})
                self.misses += 1

    def __len__(self) -> int:
        raise NotImplementedError

    def ids(self) -> list[int]:
        """The image ids stored, sorted."""
        raise NotImplementedError

    def nbytes(self) -> int:
        raise NotImplementedError

    def _rows(self, ids: Sequence[int]) -> list[dict[str, torch.Tensor]] | None:
        raise NotImplementedError

    def _has(self, image_id: int) -> bool:
        raise NotImplementedError

    def _put(self, image_id: int, row: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Make what is stored survive the process (a disk store's index)."""


class RamStore(EmbeddingStore):
    """Rows in a dict of CPU tensors (cloned: a batch's storage is not kept alive)."""

    def __init__(self, fields: Sequence[str], dtype: str, key: dict) -> None:
        super().__init__(fields, dtype, key)
        self.rows: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def ids(self) -> list[int]:
        return sorted(self.rows)

    def nbytes(self) -> int:
        return sum(t.nbytes for row in self.rows.values() for t in row.values())

    def _rows(self, ids):
        rows = [self.rows.get(int(i)) for i in ids]
        return None if any(r is None for r in rows) else rows

    def _has(self, image_id: int) -> bool:
        return int(image_id) in self.rows

    def _put(self, image_id: int, row: dict[str, torch.Tensor]) -> None:
        self.rows[int(image_id)] = {f: t.clone() for f, t in row.items()}


class DiskStore(EmbeddingStore):
    """One memory-mapped array per field, a row per image id of the split (`ids`), and an
    index of the rows filled (`filled.npy`, written by `flush`). `key.json` says what the rows
    were computed from; a folder with another key is emptied (`invalidated` says why)."""

    def __init__(
        self,
        folder: Path,
        ids: Sequence[int],
        shapes: dict,
        fields: Sequence[str],
        dtype: str,
        key: dict,
    ) -> None:
        super().__init__(fields, dtype, key)
        self.folder = Path(folder)
        self.slots = {int(i): k for k, i in enumerate(ids)}
        meta = {"key": key, "fields": list(self.fields), "dtype": dtype, "rows": len(ids)}
        meta["shapes"] = {f: list(shapes[f]) for f in self.fields}
        self.invalidated = self._open(meta)
        torch_dtype = DTYPES[dtype]
        # numpy has no bf16: 2-byte rows are stored as int16 bit patterns and viewed back
        np_dtype = np.float32 if torch_dtype == torch.float32 else np.int16
        mode = "r+" if (self.folder / f"{self.fields[0]}.npy").is_file() else "w+"
        self.arrays = {
            f: np.lib.format.open_memmap(
                self.folder / f"{f}.npy", mode, np_dtype, (len(ids), *shapes[f])
            )
            for f in self.fields
        }
        index = self.folder / "filled.npy"
        self.filled = np.load(index) if index.is_file() else np.zeros(len(ids), dtype=bool)

    def _open(self, meta: dict) -> str:
        """Create the folder, or empty it when its key differs; returns why it was emptied."""
        path = self.folder / "key.json"
        reason = ""
        if path.is_file():
            old = json.loads(path.read_text())
            if old != meta:
                changed = [k for k in meta["key"] if old.get("key", {}).get(k) != meta["key"][k]]
                reason = ", ".join(changed) or "layout"
                shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(meta, indent=1, sort_keys=True))
        return reason

    def __len__(self) -> int:
        return int(self.filled.sum())

    def ids(self) -> list[int]:
        return sorted(i for i, slot in self.slots.items() if self.filled[slot])

    def nbytes(self) -> int:
        return sum(a[0].nbytes for a in self.arrays.values()) * len(self)

    def _rows(self, ids):
        slots = [self.slots.get(int(i)) for i in ids]
        if any(s is None or not self.filled[s] for s in slots):
            return None
        return [{f: self._tensor(a[s]) for f, a in self.arrays.items()} for s in slots]

    def _tensor(self, row: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.array(row))
        return t if t.dtype == torch.float32 else t.view(DTYPES[self.dtype])

    def _has(self, image_id: int) -> bool:
        slot = self.slots.get(int(image_id))
        return slot is None or bool(self.filled[slot])  # ids outside the split are not kept

    def _put(self, image_id: int, row: dict[str, torch.Tensor]) -> None:
        slot = self.slots[int(image_id)]
        for f, t in row.items():
            self.arrays[f][slot] = (t if t.dtype == torch.float32 else t.view(torch.int16)).numpy()
        self.filled[slot] = True

    def flush(self) -> None:
        """Write the arrays, then the index (a crash in between only loses rows to refill)."""
        for array in self.arrays.values():
            array.flush()
        tmp = self.folder / "filled.tmp.npy"
        np.save(tmp, self.filled)
        tmp.replace(self.folder / "filled.npy")
