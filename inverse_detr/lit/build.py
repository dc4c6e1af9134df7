"""Config → the LightningModule that `python -m inverse_detr.train` trains (the benchmark times
the same one)."""

from __future__ import annotations

from omegaconf import DictConfig
from transformers import DetrForObjectDetection

from inverse_detr.detectors.detr import image_normalization
from inverse_detr.inverse.chain import InverseChain
from inverse_detr.inverse.spec import ChainSpec, build_chain
from inverse_detr.lit.cache import EmbeddingCache
from inverse_detr.lit.inversion import InversionModule


def build_inversion_module(
    cfg: DictConfig,
    detr: DetrForObjectDetection,
    spec: ChainSpec,
    compile: bool | None = None,
    cache: EmbeddingCache | None = None,
    chain: InverseChain | None = None,
) -> InversionModule:
    """The module `python -m inverse_detr.train` trains (the benchmark times the same one);
    compile: overrides `cfg.trainer.compile`; cache: the run's embedding cache, if any;
    chain: trained modules to start from (default: `build_chain(spec)`, random)."""
    mean, std = image_normalization(cfg.model.name)
    return InversionModule(
        detr,
        chain if chain is not None else build_chain(spec),
        mean,
        std,
        lr=dict(cfg.inverse.lr),
        weight_decay=cfg.inverse.weight_decay,
        schedule=cfg.inverse.schedule,
        objective=cfg.inverse.objective,
        compile=cfg.trainer.compile if compile is None else compile,
        on_nonfinite=cfg.trainer.on_nonfinite,
        image_size=tuple(cfg.data.image_size),
        cache=cache,
    )
