"""inverse_detr: feature inversion of detection transformers.

`load_inverter(path)` gives a trained inverse chain with the DETR it inverts; the heavy
imports (torch, transformers) happen on first use, so `python -m inverse_detr.data.shapes`
stays quick.
"""

__version__ = "0.1.0"
__all__ = ["load_inverter"]


def __getattr__(name: str):
    if name == "load_inverter":
        from inverse_detr.export import load_inverter

        return load_inverter
    raise AttributeError(f"module 'inverse_detr' has no attribute {name!r}")
