"""``python -m sam.finetune --model SRC (--coco ANN.json --images DIR | --db PROJECT.sqlite)
--out DIR``: fine-tune SAM's prompt encoder and mask decoder on the annotations and write the
best epoch as a Hugging Face folder (see :func:`sam.finetune.train`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sam.checkpoint import load_model
from sam.dataset.samples import add_dataset_args, read_dataset
from sam.errors import SamError
from sam.evaluate import add_model_args
from sam.evaluation import check_dataset
from sam.finetune import TRAINABLE_PREFIXES, FinetuneConfig, train

_DEFAULTS = FinetuneConfig()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sam.finetune",
        description="Fine-tune SAM on annotated objects; the best epoch on held-out images is "
        "written to --out as a Hugging Face folder (load_model(DIR), app.py --model DIR).",
    )
    # fp32 by default: the saved folder carries the encoder weights as they were loaded.
    add_model_args(parser, precision="fp32")
    add_dataset_args(parser)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the model to")
    parser.add_argument(
        "--train",
        default=_DEFAULTS.train,
        choices=list(TRAINABLE_PREFIXES),
        help="what to train (default: %(default)s)",
    )
    parser.add_argument("--epochs", type=int, default=_DEFAULTS.epochs)
    parser.add_argument("--max-minutes", type=float, help="stop training after this long")
    parser.add_argument("--lr", type=float, default=_DEFAULTS.lr)
    parser.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size)
    parser.add_argument("--val-fraction", type=float, default=_DEFAULTS.val_fraction)
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    parser.add_argument(
        "--corrections",
        type=int,
        default=_DEFAULTS.corrections,
        help="correction clicks simulated after each first prompt (default: %(default)s)",
    )
    parser.add_argument(
        "--val-max-clicks",
        type=int,
        default=_DEFAULTS.val_max_clicks,
        help="clicks per object when validating (default: %(default)s)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    config = FinetuneConfig(
        train=args.train,
        epochs=args.epochs,
        max_minutes=args.max_minutes,
        lr=args.lr,
        batch_size=args.batch_size,
        val_fraction=args.val_fraction,
        seed=args.seed,
        corrections=args.corrections,
        val_max_clicks=args.val_max_clicks,
    )
    try:
        config.check()
        images = read_dataset(args)
        check_dataset(images)
        engine = load_model(args.model, device=args.device, dtype=args.precision)
        result = train(
            engine, images, args.out, config, cache_dir=args.cache_dir, show_progress=True
        )
    except SamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    before, best = result.baseline, result.best
    print(f"stopped by: {result.stopped_by}; best epoch: {result.best_epoch}")
    for key in ("miou_1click", "miou_3click", "miou_5click", "miou_box", "noc85", "noc90"):
        print(f"{key:>12}: {getattr(before, key):.4f} -> {getattr(best, key):.4f}")
    print(f"wrote {args.out} (training.json, curves.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
