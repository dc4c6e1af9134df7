"""Run a chosen set of analyses and turn their results into figures, tables and metrics.

Shared by `python -m inverse_detr.analyze` (a report folder) and the training callbacks
(figures and scalars per validation epoch), so both show the same things.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from inverse_detr.analysis import plots
from inverse_detr.analysis.chains import ChainsResult, compare_chains
from inverse_detr.analysis.color import MIN_AREA, ColorResult, color_analysis
from inverse_detr.analysis.cross_layer import CrossLayerResult, cross_layer_analysis
from inverse_detr.analysis.detection_errors import ErrorsResult, error_analysis
from inverse_detr.analysis.grayscale import GrayscaleResult, grayscale_analysis
from inverse_detr.analysis.interiors import InteriorsResult, interiors_analysis
from inverse_detr.analysis.report import Section, Table
from inverse_detr.analysis.sections import (
    chains_scalars,
    chains_section,
    errors_scalars,
    errors_section,
    grayscale_scalars,
    grayscale_section,
    interiors_scalars,
    interiors_section,
    spectrum_scalars,
    spectrum_section,
)
from inverse_detr.analysis.spectrum import SpectrumResult, spectrum_analysis
from inverse_detr.analysis.stages import SCORES, StagesResult, stage_analysis
from inverse_detr.analysis.subset import ImageSet
from inverse_detr.data.recolor import FILTERS

if TYPE_CHECKING:
    from inverse_detr.export import Inverter

ANALYSES = ("stages", "cross_layer", "color")  # the default set
# run only when named (analyses=[grayscale,errors]); config/checks.py accepts the same names
EXTRA_ANALYSES = ("grayscale", "errors", "chains", "spectrum", "interiors")
RECOLOURING = ("red", "green", "blue", "shift120", "shift240")  # filters that set a new hue


@dataclass
class Options:
    """What the colour analysis recolours (the grayscale analysis reads `prototypes` too), the
    batch size of every analysis, the error analysis' detection score threshold, and the
    chains the analysed one is compared with (name → Inverter; the analysed one is `name`)."""

    prototypes: dict[int, float]
    filters: tuple[str, ...] = FILTERS
    categories: list[int] | None = None  # None: every category
    min_area: float = MIN_AREA
    batch_size: int = 16
    score_threshold: float = 0.5
    name: str = "chain"
    others: dict[str, Inverter] = field(default_factory=dict)


Result = (
    StagesResult
    | CrossLayerResult
    | ColorResult
    | GrayscaleResult
    | ErrorsResult
    | ChainsResult
    | SpectrumResult
    | InteriorsResult
)


def run_analyses(
    inverter: Inverter, subset: ImageSet, analyses: list[str], options: Options, progress=True
) -> dict[str, Result]:
    """The results of `analyses` (names from ANALYSES and EXTRA_ANALYSES) on `subset`, by
    name."""
    results: dict[str, Result] = {}
    for name in analyses:
        if name == "stages":
            results[name] = stage_analysis(inverter, subset, None, options.batch_size, 6, progress)
        elif name == "cross_layer":
            results[name] = cross_layer_analysis(inverter, subset, options.batch_size, 4, progress)
        elif name == "color":
            results[name] = color_analysis(
                inverter, subset, options.prototypes, options.filters, options.categories,
                options.min_area, None, max(1, options.batch_size // 2), progress,
            )  # fmt: skip
        elif name == "grayscale":
            results[name] = grayscale_analysis(
                inverter, subset, options.prototypes, None, max(1, options.batch_size // 2), 4,
                progress,
            )  # fmt: skip
        elif name == "errors":
            results[name] = error_analysis(
                inverter, subset, options.score_threshold, 0.5, None, options.batch_size, 6,
                progress,
            )  # fmt: skip
        elif name == "chains":
            chains = {options.name: inverter, **options.others}
            results[name] = compare_chains(chains, subset, None, options.batch_size, 6, progress)
        elif name == "spectrum":
            results[name] = spectrum_analysis(inverter, subset, None, options.batch_size, progress)
        elif name == "interiors":
            results[name] = interiors_analysis(
                inverter, subset, None, options.batch_size, 3, progress
            )
        else:
            known = ", ".join((*ANALYSES, *EXTRA_ANALYSES))
            raise ValueError(f"unknown analysis {name!r}; expected one of {known}")
    return results


def scalars(results: dict[str, Result]) -> dict[str, float]:
    """Flat `analysis/...` numbers for loggers (undefined values left out)."""
    out: dict[str, float] = {}
    if stages := results.get("stages"):
        for name, scores in [*stages.scores.items(), ("baseline", stages.baseline)]:
            out |= {f"analysis/{name}/{k}": getattr(scores, k) for k in SCORES}
    if cross := results.get("cross_layer"):
        for stage, layers, first in (("encoder", cross.encoder, 0), ("decoder", cross.decoder, 1)):
            out |= {f"analysis/{stage}_layer{first + i}/mse": s.mse for i, s in enumerate(layers)}
    if color := results.get("color"):
        for stage in color.stages:
            out[f"analysis/{stage}/color_pairwise_mse"] = color.mean_pairwise[stage]
            for kind, table in (
                ("hue_to_input", color.hue_to_input),
                ("hue_to_prototype", color.hue_to_prototype),
            ):
                value = _mean_over(table[stage], RECOLOURING)
                if value is not None:
                    out[f"analysis/{stage}/{kind}"] = value
        out |= {f"analysis/color_ap/{f}": s.ap for f, s in color.ap.items()}
    if gray := results.get("grayscale"):
        out |= grayscale_scalars(gray)
    if errors := results.get("errors"):
        out |= errors_scalars(errors)
    if chains := results.get("chains"):
        out |= chains_scalars(chains)
    if spectrum := results.get("spectrum"):
        out |= spectrum_scalars(spectrum)
    if interiors := results.get("interiors"):
        out |= interiors_scalars(interiors)
    return out


def _mean_over(by_filter: dict[str, float | None], filters: tuple[str, ...]) -> float | None:
    values = [v for f, v in by_filter.items() if f in filters and v is not None]
    return sum(values) / len(values) if values else None


def save_outputs(
    results: dict[str, Result], out_dir: Path, names: dict[int, str] | None = None
) -> list[Section]:
    """Write each result's figures (PNG) into `out_dir` and metrics.json; return the report
    sections describing them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    if stages := results.get("stages"):
        sections.append(_stage_section(stages, out_dir))
    if cross := results.get("cross_layer"):
        baseline = stages.baseline.mse if stages else None
        sections.append(_cross_layer_section(cross, out_dir, baseline))
    if color := results.get("color"):
        sections.append(_color_section(color, out_dir, names or {}))
    if gray := results.get("grayscale"):
        sections.append(grayscale_section(gray, out_dir, names or {}))
    if errors := results.get("errors"):
        sections.append(errors_section(errors, out_dir))
    if chains := results.get("chains"):
        sections.append(chains_section(chains, out_dir))
    if spectrum := results.get("spectrum"):
        sections.append(spectrum_section(spectrum, out_dir))
    if interiors := results.get("interiors"):
        sections.append(interiors_section(interiors, out_dir, names or {}))
    record = {name: result.to_dict() for name, result in results.items()}
    (out_dir / "metrics.json").write_text(json.dumps(_finite(record), indent=2))
    return sections


def _finite(value):
    """JSON has no NaN: undefined numbers become null."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _save(figure, path: Path) -> Path:
    figure.savefig(path, dpi=110)
    return path


def _stage_section(result: StagesResult, out: Path) -> Section:
    rows = [[name, *(getattr(s, k) for k in SCORES)] for name, s in result.scores.items()]
    rows.append(["mean image (baseline)", *(getattr(result.baseline, k) for k in SCORES)])
    mse = {name: s.mse for name, s in result.scores.items()}
    return Section(
        "Reconstruction by stage",
        f"{result.images} images. head: one-hot of the argmax class (suppression); head_soft: "
        "the full class probabilities. MSE in [0, 1] pixels and in DETR's normalised space.",
        [Table(["stage", *SCORES], rows)],
        [
            _save(plots.stage_bars(mse, result.baseline.mse), out / "stage_mse.png"),
            _save(plots.reconstruction_grid(result.examples), out / "stage_reconstructions.png"),
        ],
    )


def _cross_layer_section(result: CrossLayerResult, out: Path, baseline: float | None) -> Section:
    curves = {"encoder": {i: s.mse for i, s in enumerate(result.encoder)}}
    if result.decoder:
        curves["decoder"] = {j + 1: s.mse for j, s in enumerate(result.decoder)}
    rows = [[f"{stage} layer {i}", v] for stage, c in curves.items() for i, v in c.items()]
    return Section(
        "Cross-layer reconstruction",
        f"{result.images} images. Each layer fed to the inverse module of its stage (trained on "
        "the stage's last layer), then on to pixels. Encoder layer 0 is the backbone embedding.",
        [Table(["layer", "MSE"], rows)],
        [
            _save(plots.layer_curves(curves, baseline), out / "cross_layer_mse.png"),
            _save(plots.reconstruction_grid(result.examples), out / "cross_layer_grid.png"),
        ],
    )


def hue_summary(result: ColorResult) -> dict[str, dict[str, float | None]]:
    """Per stage ("input" first): the hue distance to the recoloured input and to the
    prototype, averaged over the filters that set a new hue (RECOLOURING)."""
    return {
        s: {
            "to input": _mean_over(result.hue_to_input.get(s, {}), RECOLOURING),
            "to prototype": _mean_over(result.hue_to_prototype[s], RECOLOURING),
        }
        for s in ["input", *result.stages]
    }


def _color_section(result: ColorResult, out: Path, names: dict[int, str]) -> Section:
    hue = hue_summary(result)
    return Section(
        "Colour perturbation",
        f"{result.objects} objects in {result.images} images recoloured "
        f"({result.images_without_objects} analysed images had no object to recolour). Hue "
        "distances in degrees, averaged over the filters that set a new hue; 90° is chance.",
        _color_tables(result, hue, names),
        _color_figures(result, hue, out, names),
    )


def _color_figures(result: ColorResult, hue: dict, out: Path, names: dict[int, str]) -> list:
    saturation = {s: {"saturation": _mean_over(result.saturation[s], RECOLOURING)} for s in hue}
    ap = {
        f: {names.get(c, str(c)): v for c, v in scores.per_category.items()}
        for f, scores in result.ap.items()
    }
    figures = {
        "color_pairwise.png": plots.heatmaps(
            result.pairwise,
            result.filters,
            "pairwise MSE between reconstructions under two filters",
        ),
        "color_hue.png": plots.grouped_bars(
            hue,
            "hue distance (degrees)",
            "hue of the reconstruction inside the recoloured objects",
            (90.0, "chance (90°)"),
        ),
        "color_saturation.png": plots.grouped_bars(
            saturation, "saturation", "mean saturation inside the recoloured objects"
        ),
        "color_ap.png": plots.grouped_bars(ap, "AP", "detector AP per category under each filter"),
        "color_reconstructions.png": plots.reconstruction_grid(result.examples),
    }
    return [_save(figure, out / name) for name, figure in figures.items()]


def _color_tables(result: ColorResult, hue: dict, names: dict[int, str]) -> list[Table]:
    summary = [
        [s, result.mean_pairwise.get(s), hue[s]["to input"], hue[s]["to prototype"]] for s in hue
    ]
    ap_rows = [[f, s.ap, s.ap50, *(s.per_category.get(c) for c in sorted(names))]
               for f, s in result.ap.items()]  # fmt: skip
    return [
        Table(["stage", "mean pairwise MSE", "hue to input", "hue to prototype"], summary),
        Table(["filter", "AP", "AP50", *(names[c] for c in sorted(names))], ap_rows),
    ]
