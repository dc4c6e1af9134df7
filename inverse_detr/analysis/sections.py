"""Report sections and logger scalars of the grayscale, detection-error, chains, spectrum and
interiors analyses (the suite calls these beside its own sections for the stage, cross-layer
and colour analyses)."""

from __future__ import annotations

from pathlib import Path

from inverse_detr.analysis import plots
from inverse_detr.analysis.chains import ChainsResult
from inverse_detr.analysis.detection_errors import GROUPS, ErrorsResult
from inverse_detr.analysis.grayscale import INPUTS, GrayscaleResult
from inverse_detr.analysis.interiors import BACKGROUND, InteriorsResult
from inverse_detr.analysis.report import Section, Table
from inverse_detr.analysis.spectrum import SpectrumResult

INPUT_ROW = "input"  # the hue tables' row for the original colour image


def grayscale_scalars(result: GrayscaleResult) -> dict[str, float]:
    """`analysis/<stage>/gray_*` and `analysis/gray_ap/<input>` numbers (undefined left out)."""
    out = {}
    for stage in result.stages:
        out[f"analysis/{stage}/gray_mse_to_gray"] = result.mse_to_gray[stage]
        out[f"analysis/{stage}/gray_mse_to_color"] = result.mse_to_color[stage]
        for key, table in (
            ("hue_to_prototype", result.hue_to_prototype),
            ("saturation", result.saturation),
        ):
            if table[stage] is not None:
                out[f"analysis/{stage}/gray_{key}"] = table[stage]
    return out | {f"analysis/gray_ap/{name}": s.ap for name, s in result.ap.items()}


def errors_scalars(result: ErrorsResult) -> dict[str, float]:
    """`analysis/<stage>/errors_<group>_mse`, `analysis/errors/<count>` and `.../vanishing`."""
    out = {
        f"analysis/{stage}/errors_{group}_mse": value
        for stage, groups in result.in_mask_mse.items()
        for group, value in groups.items()
        if value is not None
    }
    for key in ("detected", "missed", "false_positives", "vanishing"):
        if getattr(result, key) is not None:
            out[f"analysis/errors/{key}"] = float(getattr(result, key))
    return out


def _save(figure, path: Path) -> Path:
    figure.savefig(path, dpi=110)
    return path


def grayscale_section(result: GrayscaleResult, out: Path, names: dict[int, str]) -> Section:
    rows = [INPUT_ROW, *result.stages]
    hue_groups = {
        s: {names.get(c, str(c)): h.to_prototype for c, h in result.categories[s].items()}
        for s in rows
    }
    figures = {
        "grayscale_mse.png": plots.grouped_bars(
            {
                s: {
                    "to the gray input": result.mse_to_gray[s],
                    "to the colour image": result.mse_to_color[s],
                }
                for s in result.stages
            },
            "MSE, [0, 1] pixels",
            "reconstruction from the gray input",
        ),
        "grayscale_hue.png": plots.grouped_bars(
            hue_groups,
            "hue distance (degrees)",
            "hue inside the objects to the category's prototype (gray input)",
            (90.0, "chance (90°)"),
        ),
        "grayscale_saturation.png": plots.grouped_bars(
            {s: {"saturation": result.saturation[s]} for s in rows},
            "saturation",
            "mean saturation inside the objects (gray input; 'input': the colour image)",
        ),
        "grayscale_ap.png": plots.grouped_bars(
            {
                n: {names.get(c, str(c)): v for c, v in result.ap[n].per_category.items()}
                for n in INPUTS
            },
            "AP",
            "detector AP per category on colour and gray inputs",
        ),
        "grayscale_reconstructions.png": plots.reconstruction_grid(result.examples),
    }
    return Section(
        "Grayscale input",
        f"{result.objects} objects in {result.images} images, the whole image made gray before "
        f"DETR sees it. Hue distances in degrees (90° is chance), saturation-weighted hue inside "
        f"each object's mask; row '{INPUT_ROW}' is the original colour image.",
        _grayscale_tables(result, rows, names),
        [_save(figure, out / name) for name, figure in figures.items()],
    )


def _grayscale_tables(result: GrayscaleResult, rows: list[str], names: dict) -> list[Table]:
    summary = [
        [
            s,
            result.mse_to_gray.get(s),
            result.mse_to_color.get(s),
            result.hue_to_prototype[s],
            result.saturation[s],
        ]
        for s in rows
    ]
    by_category = {c: [result.categories[s][c] for s in rows] for c in result.categories[rows[0]]}
    hues, distances = [], []
    for c, hues_of in sorted(by_category.items()):
        first = [names.get(c, str(c)), hues_of[0].prototype]
        hues.append(first + [h.hue for h in hues_of])
        distances.append(first + [h.to_prototype for h in hues_of])
    cats = sorted(names)
    ap = [
        [n, result.ap[n].ap, result.ap[n].ap50, *(result.ap[n].per_category.get(c) for c in cats)]
        for n in INPUTS
    ]
    return [
        Table(
            ["stage", "MSE to gray input", "MSE to colour image", "hue to prototype", "saturation"],
            summary,
        ),
        Table(["category (mean hue)", "prototype", *rows], hues),
        Table(["category (hue to prototype)", "prototype", *rows], distances),
        Table(["input", "AP", "AP50", *(names[c] for c in cats)], ap),
    ]


def errors_section(result: ErrorsResult, out: Path) -> Section:
    bars = plots.grouped_bars(
        {s: dict(groups) for s, groups in result.in_mask_mse.items()},
        "MSE inside the object's mask",
        "reconstruction error inside detected and missed objects",
    )
    figures = [_save(bars, out / "errors_in_mask.png")]
    for name, columns in (
        ("errors_false_positives.png", result.examples),
        ("errors_missed.png", result.missed_examples),
    ):
        if columns:
            figures.append(_save(plots.reconstruction_grid(columns), out / name))
    return Section(
        "Detection errors",
        f"{result.images} images; detections of score ≥ {result.score_threshold} matched greedily "
        f"to same-class objects at IoU ≥ {result.iou_threshold}. In-mask MSE in [0, 1] pixels. "
        f"Vanishing (missed objects' decoder/encoder error ratio over the detected ones'): "
        f"{_text(result.vanishing)}; well above 1 means missed objects are lost at the decoder. "
        "Crops: false positives (input | decoder-stage reconstruction), then missed objects.",
        _errors_tables(result),
        figures,
    )


def _errors_tables(result: ErrorsResult) -> list[Table]:
    counts = [
        ["detected objects", result.detected, None],
        ["missed objects", result.missed, None],
        ["false positives", result.false_positives, result.false_positive_score],
    ]
    stages = [
        [s, *(groups[g] for g in GROUPS), _ratio(groups["missed"], groups["detected"])]
        for s, groups in result.in_mask_mse.items()
    ]
    ratios = [[g, result.decoder_over_encoder[g]] for g in GROUPS]
    return [
        Table(["", "count", "mean score"], counts),
        Table(["stage", *GROUPS, "missed / detected"], stages),
        Table(
            ["group", "decoder / encoder in-mask MSE"], [*ratios, ["vanishing", result.vanishing]]
        ),
    ]


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _text(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3g}"


def chains_scalars(result: ChainsResult) -> dict[str, float]:
    """`analysis/chains/<chain>/<score>` numbers."""
    return {
        f"analysis/chains/{name}/{key}": value
        for name, scores in result.scores.items()
        for key, value in vars(scores).items()
    }


def chains_section(result: ChainsResult, out: Path) -> Section:
    rows = [[name, *vars(s).values()] for name, s in result.scores.items()]
    rows.append(["(the input images)", 0.0, None, result.input_saturation])
    grid = plots.reconstruction_grid(result.examples)
    return Section(
        "Inverse chains compared",
        f"{result.images} images, each chain reconstructing from the {result.stage} stage. MSE "
        "in [0, 1] pixels to the image and to the images' mean image (low: the chain falls back "
        "to the mean); saturation: HSV, mean over the image (low: greyer).",
        [Table(["chain", "MSE to image", "MSE to mean image", "saturation"], rows)],
        [_save(grid, out / "chains_reconstructions.png")],
    )


def spectrum_scalars(result: SpectrumResult) -> dict[str, float]:
    """`analysis/<stage>/spectrum_error_band<i>` numbers, band 0 the lowest frequencies."""
    return {
        f"analysis/{stage}/spectrum_error_band{i}": value
        for stage, bands in result.error.items()
        for i, value in enumerate(bands)
    }


def spectrum_section(result: SpectrumResult, out: Path) -> Section:
    power = [[stage, *bands, sum(bands)] for stage, bands in result.error.items()]
    power.append(["(the images around their mean: the baseline)", *result.image, sum(result.image)])
    kept = [[stage, *result.kept(stage)] for stage in result.error]
    bars = plots.grouped_bars(
        {label: {s: result.kept(s)[i] for s in result.error} for i, label in
         enumerate(result.labels)},
        "share of the image's power kept",
        "what each stage reconstructs, by period (1 − error power / image power)",
    )  # fmt: skip
    return Section(
        "Reconstruction error by spatial frequency",
        f"{result.images} images. The error of each stage's reconstruction split into radial "
        f"frequency bands (by period in pixels; stride {result.stride}, so periods under "
        f"{2 * result.stride} px are finer than the token grid). The bands add up to the stage's "
        "MSE in [0, 1] pixels; the last row is the error of the mean-image baseline.",
        [
            Table(["stage", *result.labels, "total (MSE)"], power),
            Table(["stage (share kept)", *result.labels], kept),
        ],
        [_save(bars, out / "spectrum_kept.png")],
    )


def interiors_scalars(result: InteriorsResult) -> dict[str, float]:
    """`analysis/<stage>/interior_<error|floor|kept>/<category>` and the background's share."""
    out = {}
    for stage, rows in result.rows.items():
        for category, row in rows.items():
            keys = ("share",) if category == BACKGROUND else ("error", "floor", "kept")
            out |= {f"analysis/{stage}/interior_{k}/{category}": row[k] for k in keys}
    return {k: v for k, v in out.items() if _defined(v) is not None}


def interiors_section(result: InteriorsResult, out: Path, names: dict[int, str]) -> Section:
    def label(category: str) -> str:
        return category if category == BACKGROUND else names.get(int(category), category)

    keys = ("objects", "mask_pixels", "error", "floor", "spread", "kept", "share")
    rows = [
        [f"{stage} · {label(c)}", *(_defined(r.get(k)) for k in keys)]
        for stage, by_category in result.rows.items()
        for c, r in by_category.items()
    ]
    bars = plots.grouped_bars(
        {label(c): {s: _defined(result.rows[s][c]["kept"]) for s in result.rows} for c in
         next(iter(result.rows.values())) if c != BACKGROUND},
        "correlation of the pattern",
        "the pattern inside the objects kept in place, by stage",
    )  # fmt: skip
    return Section(
        "Inside the objects: pattern or colour",
        f"{result.images} images; each object's mask eroded by {result.erode} px. Error: the "
        "stage's MSE in the interior ([0, 1] RGB); floor: the image's own spread around the "
        "interior's mean colour, the error of a flat fill of the right colour; spread: the "
        "reconstruction's around its own mean; kept: correlation of the two patterns' "
        "luminance (0: the pattern is lost or at another phase); mask_pixels and share: the "
        "category's whole masks, their pixels and their part of the stage's image MSE.",
        [Table(["stage · category", *keys], rows)],
        [_save(bars, out / "interiors_kept.png")],
    )


def _defined(value: float | None) -> float | None:
    """NaN (undefined) as None, which tables print as '–' and plots leave out."""
    return None if value is None or value != value else value
