"""``python -m sam.evaluate --model SRC (--coco ANN.json --images DIR | --db PROJECT.sqlite)
[--json]``: a simulated annotator clicks on every object (the interactive-segmentation
protocol of :mod:`sam.evaluation`) and the mIoU and NoC are printed, per label and overall."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sam.checkpoint import load_model
from sam.dataset.samples import add_dataset_args, read_dataset
from sam.device import PRECISION_CHOICES
from sam.disk_cache import EmbeddingDiskCache
from sam.errors import SamError
from sam.evaluation import EvaluationResult, Summary, check_dataset, evaluate
from sam.evaluation.metrics import MAX_CLICKS

_COLUMNS = ("n_objects", "miou_1click", "miou_3click", "miou_5click", "miou_box", "noc85", "noc90")


def add_model_args(parser: argparse.ArgumentParser, precision: str = "auto") -> None:
    """``--model``, ``--device``, ``--precision`` and ``--cache-dir``."""
    parser.add_argument("--model", required=True, help="hub repo id, model folder or .pth file")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument(
        "--precision",
        default=precision,
        choices=PRECISION_CHOICES,
        help="image-encoder precision (default: %(default)s)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, help="keep image embeddings here, to reuse them next time"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sam.evaluate",
        description="Measure a model with a simulated annotator: mIoU after 1, 3 and 5 clicks "
        "and from the box, NoC@85 and NoC@90, per label and overall.",
    )
    add_model_args(parser)
    add_dataset_args(parser)
    parser.add_argument(
        "--max-clicks", type=int, default=MAX_CLICKS, help="clicks per object (default: 20)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    return parser


def format_table(result: EvaluationResult) -> str:
    """The summaries as an aligned text table, one row per label then the overall row."""
    rows: list[tuple[str, Summary]] = [*result.per_label.items(), ("all", result.overall)]
    width = max(len("label"), *(len(name or "(no label)") for name, _ in rows))
    lines = ["label".ljust(width) + "".join(f"{c:>13}" for c in _COLUMNS)]
    for name, summary in rows:
        values = [getattr(summary, c) for c in _COLUMNS]
        cells = [f"{v:>13d}" if isinstance(v, int) else f"{v:>13.4f}" for v in values]
        lines.append((name or "(no label)").ljust(width) + "".join(cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.max_clicks < 1:
        parser.error("--max-clicks must be at least 1")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        images = read_dataset(args)
        check_dataset(images)
        engine = load_model(args.model, device=args.device, dtype=args.precision)
        disk = EmbeddingDiskCache(args.cache_dir, engine) if args.cache_dir else None
        result = evaluate(
            engine, images, max_clicks=args.max_clicks, disk_cache=disk, progress=True
        )
    except SamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict()) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
