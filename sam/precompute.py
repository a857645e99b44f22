"""Encode a whole image folder ahead of time: ``python -m sam.precompute --model M --images DIR``.

Embeddings go to the project's disk cache (default ``DIR/.sam-annotator/embeddings``), so the
app opens every image without waiting for the encoder. Each encoded image also leaves a small
*source record* (``<model folder>/sources/<id>``, naming the embedding file): it lets a later
run skip the image from a ``stat`` alone, before any image is read or any work scheduled, which
makes an interrupted run resumable. With ``--ray`` the same per-image step runs on a pool of
Ray actors (:mod:`sam.scale`, imported only then).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .checkpoint import load_model
from .device import PRECISION_CHOICES
from .disk_cache import EmbeddingDiskCache
from .errors import EmbeddingStoreError, SamError
from .image_io import list_images, load_image
from .predictor import SamPredictor

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = ".sam-annotator/embeddings"
SOURCES_DIR = "sources"

#: What one image's step came to: "encoded", "skipped" (already stored) or "failed".
Outcome = tuple[str, str, str]  # (relative path, status, message)


@dataclass
class Summary:
    """What a precompute run did; ``failed`` and ``lost`` name images by relative path."""

    encoded: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # path -> why it could not be read
    lost: list[str] = field(default_factory=list)  # in flight on a worker that died

    def add(self, outcome: Outcome) -> None:
        rel, status, message = outcome
        if status == "encoded":
            self.encoded += 1
        elif status == "skipped":
            self.skipped += 1
        else:
            self.failed[rel] = message

    def line(self) -> str:
        failed = f" ({', '.join(sorted(self.failed))})" if self.failed else ""
        return f"encoded {self.encoded}, skipped {self.skipped}, failed {len(self.failed)}{failed}"


def _source_id(folder: Path, rel: str) -> str | None:
    """Name of ``rel``'s source record: its path, size and modification time (a changed file
    gets a new record), or None when the file cannot be stat'ed."""
    try:
        st = (folder / rel).stat()
    except OSError:
        return None
    return hashlib.blake2b(
        f"{rel}\0{st.st_size}\0{st.st_mtime_ns}".encode(), digest_size=16
    ).hexdigest()


def is_stored(cache_folder: Path, folder: Path, rel: str) -> bool:
    """Whether ``rel`` was encoded into ``cache_folder`` (a model's folder) and its embedding
    file is still there: a ``stat`` and a small read, no image decoding."""
    source = _source_id(folder, rel)
    if source is None:
        return False
    try:
        name = (cache_folder / SOURCES_DIR / source).read_text(encoding="utf-8").strip()
    except OSError:
        return False
    return bool(name) and (cache_folder / name).is_file()


def encode_file(predictor: SamPredictor, folder: Path, rel: str) -> Outcome:
    """Encode ``folder/rel`` into the predictor's disk cache unless stored; never raises for a
    bad image (it is the outcome's message)."""
    cache = predictor.disk_cache
    assert cache is not None  # precompute always builds its predictors with a disk cache
    if is_stored(cache.folder, folder, rel):
        return rel, "skipped", ""
    source = _source_id(folder, rel)
    try:
        predictor.set_image(load_image(folder / rel))
    except SamError as exc:
        logger.warning("%s: %s", rel, exc)
        return rel, "failed", str(exc)
    status = "encoded" if predictor.embedding_source == "encoder" else "skipped"
    stored = cache.file_of(predictor.image_key or "")
    if source is not None and stored.is_file():
        _write_atomic(cache.folder / SOURCES_DIR / source, stored.name)
    return rel, status, ""


def _write_atomic(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:  # the embedding is stored; the next run only re-reads this image
        logger.warning("Could not record %s: %s", path, exc)


def check_writable(root: Path) -> str:
    """Create ``root`` and write a probe file in it; returns the probe's name (workers of a
    cluster look for it to prove they see the same store). Raises EmbeddingStoreError."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe-{uuid.uuid4().hex}"
        probe.write_text("sam-annotator", encoding="utf-8")
    except OSError as exc:
        raise EmbeddingStoreError(
            f"Cannot write embeddings to {root}: {exc.strerror or exc}. Pass --cache-dir with a "
            "writable folder (on a cluster: a shared filesystem every worker mounts)."
        ) from exc
    return probe.name


def todo(cache_folder: Path, folder: Path, images: Sequence[str]) -> list[str]:
    """The images of ``images`` not stored yet, in order."""
    return [rel for rel in images if not is_stored(cache_folder, folder, rel)]


def precompute(
    predictor: SamPredictor,
    folder: Path,
    progress: bool = True,
    on_done: Callable[[Outcome], None] | None = None,
) -> Summary:
    """Encode every image of ``folder`` not yet in the predictor's disk cache, in this process."""
    assert predictor.disk_cache is not None
    images = list_images(folder)
    pending = todo(predictor.disk_cache.folder, folder, images)
    summary = Summary(skipped=len(images) - len(pending))
    for rel in tqdm(pending, desc="encoding", unit="image", disable=not progress):
        outcome = encode_file(predictor, folder, rel)
        summary.add(outcome)
        if on_done is not None:
            on_done(outcome)
    return summary


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sam.precompute",
        description="Encode a folder of images ahead of time into the disk cache (resumable), "
        "here or on a Ray cluster (--ray).",
    )
    parser.add_argument("--model", default="facebook/sam-vit-base", help="model source")
    parser.add_argument("--images", required=True, type=Path, help="folder of images")
    parser.add_argument(
        "--cache-dir", type=Path, help=f"embedding folder (default: IMAGES/{DEFAULT_CACHE_DIR})"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument(
        "--precision", default="auto", choices=PRECISION_CHOICES,
        help="encoder precision (default: auto)",
    )  # fmt: skip
    add_ray_args(parser)
    return parser


def add_ray_args(parser: argparse.ArgumentParser) -> None:
    """The cluster options of ``sam.precompute`` and ``sam.autolabel``."""
    group = parser.add_argument_group("Ray (pip install '.[scale]')")
    group.add_argument(
        "--ray", metavar="auto|ADDRESS|local",
        help="run on Ray: 'auto' joins the cluster this machine belongs to, ADDRESS a given "
        "one (host:6379 or ray://host:10001), 'local' starts one here",
    )  # fmt: skip
    group.add_argument(
        "--num-workers", type=int, help="actors, one model each (default: one per GPU, else CPU)"
    )
    group.add_argument(
        "--gpus-per-worker", type=float, default=0.0, help="GPUs per actor (default: 0)"
    )
    group.add_argument("--batch-size", type=int, default=4, help="images per task (default: 4)")


def report_problems(failed: dict[str, str], lost: Sequence[str]) -> int:
    """Print (to stderr) each image a folder run could not read, with why, and how many were
    lost with a worker that died. Returns the CLI's exit status: 1 when any were lost (running
    the same command again finishes them), else 0."""
    for rel, why in sorted(failed.items()):
        print(f"  could not read {rel}: {why}", file=sys.stderr)
    if not lost:
        return 0
    print(
        f"  {len(lost)} image(s) were in flight on a worker that died; run the same command "
        "again to finish them",
        file=sys.stderr,
    )
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        if not args.images.is_dir():
            raise SamError(f"{args.images} is not a folder.")
        root = args.cache_dir or args.images / DEFAULT_CACHE_DIR
        if args.ray:
            # Needs ray, so imported only here; it checks the store on every worker too.
            from .scale import RayOptions, precompute_on_ray

            options = RayOptions.from_args(args)
            summary, folder = precompute_on_ray(
                args.model, args.images, root, options, args.device, args.precision
            )
        else:
            (root / check_writable(root)).unlink()
            model = load_model(args.model, device=args.device, dtype=args.precision)
            cache = EmbeddingDiskCache(root, model)
            summary, folder = precompute(SamPredictor(model, cache), args.images), cache.folder
    except SamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{summary.line()} -> {folder}")
    return report_problems(summary.failed, summary.lost)


if __name__ == "__main__":
    sys.exit(main())
