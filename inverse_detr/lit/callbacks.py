"""Lightning callbacks: the analyses of `inverse_detr.analysis`, run while training.

`AnalysisCallback` runs every N validation epochs, on rank zero, over a fixed seeded subset of
the validation split, and
  - logs the scalars (`analysis/<stage>/mse`, `analysis/<stage>/hue_to_prototype`, ...) to the
    run's logger, and the figures as images when the logger takes images (W&B);
  - writes the figures, metrics.json and report.html to <run>/analysis/epoch-<N>/, and to
    <run>/analysis/final/ for the exported (best) weights that `run` validates at the end.
An analysis the chain cannot run (e.g. cross-layer without an inverse encoder, or no object
large enough to recolour) is skipped with one warning; it never stops the training.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from inverse_detr.analysis.color import prototype_hues
from inverse_detr.analysis.report import write_report
from inverse_detr.analysis.subset import AnalysisError, ImageSet, fixed_subset
from inverse_detr.analysis.suite import Options, run_analyses, save_outputs, scalars
from inverse_detr.data.coco import CocoDetection
from inverse_detr.export import Inverter

log = logging.getLogger(__name__)


class AnalysisCallback(Callback):
    """analyses: names from `inverse_detr.analysis.suite.ANALYSES`; options.prototypes is
    filled from the training split when left empty."""

    def __init__(
        self,
        analyses: list[str],
        out_dir: Path,
        options: Options,
        every_n_epochs: int = 1,
        images: int = 16,
        seed: int = 0,
    ) -> None:
        self.analyses = list(analyses)
        self.out_dir = out_dir
        self.options = options
        self.every_n_epochs = every_n_epochs
        self.images = images
        self.seed = seed
        self.validations = 0
        self.skipped: set[str] = set()
        self._subset: ImageSet | None = None
        self.names: dict[int, str] = {}

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        final = trainer.state.fn == TrainerFn.VALIDATING  # `run`'s check of the exported weights
        self.validations += 0 if final else 1
        if (self.validations % self.every_n_epochs and not final) or not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "splits"):
            if "all" not in self.skipped:
                log.warning("analyses skipped: they need the run's DetectionDataModule")
                self.skipped.add("all")
            return
        inverter = Inverter(
            pl_module.detr, pl_module.chain, getattr(pl_module, "spec", None), datamodule.transform
        )
        subset = self._images(datamodule)
        results = {}
        with torch.no_grad(), torch.autocast(pl_module.device.type, enabled=False):
            for name in [n for n in self.analyses if n not in self.skipped]:
                try:
                    results |= run_analyses(inverter, subset, [name], self.options, False)
                except AnalysisError as err:
                    log.warning("analysis %s skipped for this run: %s", name, err)
                    self.skipped.add(name)
        if results:
            self._publish(results, trainer, final)

    def _images(self, datamodule) -> ImageSet:
        """The fixed subset (with instance masks), read once; prototypes with it."""
        if self._subset is None:
            train, val = datamodule.splits["train"], datamodule.splits["val"]
            transform = datamodule.transform
            dataset = CocoDetection(val.images, val.annotations, transform, with_masks=True)
            self._subset = fixed_subset(dataset, self.images, self.seed)
            if "color" in self.analyses and not self.options.prototypes:
                train_set = CocoDetection(train.images, train.annotations, transform)
                self.options.prototypes = prototype_hues(train_set, seed=self.seed)
            self.names = dataset.category_names()
        return self._subset

    def _publish(self, results: dict, trainer: pl.Trainer, final: bool) -> None:
        out = self.out_dir / ("final" if final else f"epoch-{trainer.current_epoch:03d}")
        sections = save_outputs(results, out, self.names)
        write_report(out / "report.html", f"epoch {trainer.current_epoch}", str(out), sections)
        logger = trainer.logger
        if logger is None:
            return
        logger.log_metrics(scalars(results), step=trainer.global_step)
        step = trainer.global_step
        if hasattr(logger, "log_image"):  # W&B: figures as images, tables as tables
            for figure in [f for s in sections for f in s.figures]:
                logger.log_image(f"analysis/{figure.stem}", [str(figure)], step=step)
        if hasattr(logger, "log_table"):
            for section in sections:
                for k, table in enumerate(section.tables):
                    key = f"analysis/{section.title.lower().replace(' ', '_')}_{k}"
                    logger.log_table(key, columns=table.header, data=table.rows, step=step)
