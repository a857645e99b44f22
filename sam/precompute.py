"""Encode a whole image folder ahead of time: ``python -m sam.precompute --model M --images DIR``.

Embeddings go to the project's disk cache (default ``DIR/.sam-annotator/embeddings``), so the
app opens every image without waiting for the encoder. Images already cached are skipped,
which makes an interrupted run resumable.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from .checkpoint import load_model
from .disk_cache import EmbeddingDiskCache
from .errors import SamError
from .image_io import list_images, load_image
from .predictor import SamPredictor

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = ".sam-annotator/embeddings"


def precompute(
    predictor: SamPredictor, folder: Path, progress: bool = True
) -> tuple[int, int, list[str]]:
    """Encode every image of ``folder`` not yet on disk: (encoded, skipped, failed paths)."""
    encoded = skipped = 0
    failed: list[str] = []
    for rel in tqdm(list_images(folder), desc="encoding", unit="image", disable=not progress):
        try:
            predictor.set_image(load_image(folder / rel))
        except SamError as exc:
            logger.warning("%s: %s", rel, exc)
            failed.append(rel)
            continue
        if predictor.embedding_source == "encoder":
            encoded += 1
        else:
            skipped += 1
    return encoded, skipped, failed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sam.precompute",
        description="Encode a folder of images ahead of time into the disk cache (resumable).",
    )
    parser.add_argument("--model", default="facebook/sam-vit-base", help="model source")
    parser.add_argument("--images", required=True, type=Path, help="folder of images")
    parser.add_argument(
        "--cache-dir", type=Path, help=f"embedding folder (default: IMAGES/{DEFAULT_CACHE_DIR})"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument(
        "--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
        help="encoder precision (default: auto)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        if not args.images.is_dir():
            raise SamError(f"{args.images} is not a folder.")
        model = load_model(args.model, device=args.device, dtype=args.precision)
        cache = EmbeddingDiskCache(args.cache_dir or args.images / DEFAULT_CACHE_DIR, model)
        encoded, skipped, failed = precompute(SamPredictor(model, cache), args.images)
    except SamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"encoded {encoded}, already cached {skipped}, failed {len(failed)} -> {cache.folder}")
    for rel in failed:
        print(f"  could not read {rel}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
