"""Command line: ``python -m sam predict --model SRC --image PATH --point X Y --out mask.png``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .checkpoint import KNOWN_MODELS, load_model
from .errors import SamError
from .predictor import SamPredictor

logger = logging.getLogger("sam")


def _parser() -> argparse.ArgumentParser:
    known = ", ".join(KNOWN_MODELS.values())
    parser = argparse.ArgumentParser(
        prog="python -m sam",
        description="Segment Anything from the command line.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    predict = sub.add_parser(
        "predict",
        help="segment one object from point and/or box prompts and save the best mask",
        description="Segment one object and write the best mask as a PNG (0/255, image size).",
    )
    predict.add_argument(
        "--model",
        default="facebook/sam-vit-base",
        help=f"hub repo id ({known}), a model folder, or a Meta .pth file (default: %(default)s)",
    )
    predict.add_argument("--image", required=True, type=Path, help="image file to segment")
    predict.add_argument(
        "--point",
        nargs=2,
        type=float,
        action="append",
        default=[],
        metavar=("X", "Y"),
        help="foreground point in image pixels; repeat for more points",
    )
    predict.add_argument(
        "--negative",
        nargs=2,
        type=float,
        action="append",
        default=[],
        metavar=("X", "Y"),
        help="background point (not part of the object); repeatable",
    )
    predict.add_argument(
        "--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"), help="box around the object"
    )
    predict.add_argument("--out", required=True, type=Path, help="output PNG path")
    predict.add_argument(
        "--single",
        action="store_true",
        help="ask for one mask instead of three candidates (better with several prompts)",
    )
    predict.add_argument(
        "--device", default="auto", help="auto (CUDA if available), cpu or cuda (default: auto)"
    )
    predict.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="encoder precision (default: auto)",
    )
    return parser


def _predict(args: argparse.Namespace) -> int:
    points = [*args.point, *args.negative]
    labels = [1] * len(args.point) + [0] * len(args.negative)
    if not points and args.box is None:
        raise SamError("Give at least one --point, --negative or --box.")
    model = load_model(args.model, device=args.device, dtype=args.precision)
    predictor = SamPredictor(model)
    start = time.perf_counter()
    predictor.set_image(args.image)
    logger.info("Image ready in %.2f s", time.perf_counter() - start)
    masks, scores, _ = predictor.predict(
        point_coords=np.array(points) if points else None,
        point_labels=np.array(labels) if points else None,
        box=None if args.box is None else np.array(args.box),
        multimask_output=not args.single and len(points) <= 1 and args.box is None,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(masks[0].astype(np.uint8) * 255).save(args.out)
    for rank, score in enumerate(scores):
        area = int(masks[rank].sum())
        chosen = "  -> saved" if rank == 0 else ""
        print(f"candidate {rank + 1}: predicted IoU {score:.4f}, area {area} px{chosen}")
    print(f"wrote {args.out} ({masks.shape[2]}x{masks.shape[1]})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return _predict(args)
    except SamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
