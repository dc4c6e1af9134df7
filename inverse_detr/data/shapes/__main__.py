"""`python -m inverse_detr.data.shapes --out DIR --train N --val M [rules]` writes a world;
`python -m inverse_detr.data.shapes --stats DIR` prints its planted truths, measured back from
the annotations (DIR: a world folder or one COCO file)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from inverse_detr.data.shapes.classes import MIN_CLASSES, SHAPE_CLASSES
from inverse_detr.data.shapes.rules import COLOUR_RULES, PLANTED, SCALE_RULES, Rules
from inverse_detr.data.shapes.stats import format_stats, world_stats
from inverse_detr.data.shapes.world import (
    MARKER_NAME,
    ShapesPaths,
    check_arguments,
    generate_shapes,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inverse_detr.data.shapes", description=__doc__)
    parser.add_argument("--stats", type=Path, help="print the planted truths of this world")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument("--train", type=int, help="number of train images")
    parser.add_argument("--val", type=int, help="number of val images")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--classes", type=int, default=6, help=f"K, {MIN_CLASSES}..{len(SHAPE_CLASSES)}"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    rules = parser.add_argument_group("planted rules (default: every truth planted)")
    rules.add_argument(
        "--first-version", action="store_true", help="the first version's world (overrides below)"
    )
    rules.add_argument("--colour", choices=COLOUR_RULES, default=PLANTED.colour)
    rules.add_argument(
        "--context",
        action=argparse.BooleanOptionalAction,
        default=PLANTED.context,
        help="co-occurrence rules",
    )
    rules.add_argument(
        "--texture",
        action=argparse.BooleanOptionalAction,
        default=PLANTED.texture,
        help="class textures",
    )
    rules.add_argument("--scale", choices=SCALE_RULES, default=PLANTED.scale)
    return parser


def _rules(args: argparse.Namespace) -> Rules:
    if args.first_version:
        return Rules()
    return Rules(colour=args.colour, context=args.context, texture=args.texture, scale=args.scale)


def _print_stats(where: Path, parser: argparse.ArgumentParser) -> None:
    files = [where] if where.is_file() else sorted(where.glob("annotations/instances_*.json"))
    if not files:
        parser.error(f"--stats {where}: no COCO file there (expected annotations/instances_*.json)")
    for file in files:
        print(f"== {file}")
        print(format_stats(world_stats(file)))


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: write a world (one summary line) or print a world's statistics."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.stats is not None:
        _print_stats(args.stats, parser)
        return
    if args.out is None or args.train is None or args.val is None:
        parser.error("writing a world needs --out, --train and --val (or give --stats DIR)")
    try:
        check_arguments(args.train, args.val, args.size, args.seed, args.classes)
    except ValueError as err:
        parser.error(str(err))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    paths: ShapesPaths = generate_shapes(
        args.out,
        args.train,
        args.val,
        args.size,
        args.seed,
        args.classes,
        args.workers,
        rules=_rules(args),
    )
    params = json.loads((paths.root / MARKER_NAME).read_text(encoding="utf-8"))
    objects = params["train_objects"] + params["val_objects"]
    print(
        f"shapes world: {args.train + args.val} images, {objects} objects, {args.classes} classes, "
        f"{args.size}px -> {paths.root} in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
