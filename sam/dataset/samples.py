"""A project's annotation database as :class:`sam.evaluation.AnnotatedImage` records, for
evaluating and fine-tuning on what was annotated in the app."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DatasetError
from ..evaluation.samples import AnnotatedImage, AnnotatedObject, read_coco
from .store import AnnotationStore


def read_store(db: str | Path, images_dir: str | Path | None = None) -> list[AnnotatedImage]:
    """Every image of the project with its objects (label names; "" for none).

    ``images_dir``: the image folder when the database does not name it (or it moved).

    Raises:
        DatasetError: the database does not exist or names no image folder.
    """
    db = Path(db)
    if not db.is_file():
        raise DatasetError(
            f"There is no annotation database at {db.name}: pass the project's .sqlite file."
        )
    with AnnotationStore(db) as store:
        folder = Path(images_dir) if images_dir is not None else store.images_dir
        if folder is None:
            raise DatasetError(
                f"{db.name} does not say where its images are: pass --images DIR as well."
            )
        names = {label.id: label.name for label in store.labels()}
        images = []
        for record in store.images():
            objects = tuple(
                AnnotatedObject(obj.rle, names.get(obj.label_id, "") if obj.label_id else "")
                for obj in store.objects(record.id)
            )
            if objects:
                images.append(AnnotatedImage(folder / record.path, record.path, objects))
    return images


def add_dataset_args(parser: argparse.ArgumentParser) -> None:
    """The dataset options shared by ``python -m sam.evaluate`` and ``python -m sam.finetune``:
    ``--coco ANN.json --images DIR`` or ``--db PROJECT.sqlite [--images DIR]``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--coco", type=Path, help="COCO instances JSON (RLE or polygons)")
    source.add_argument("--db", type=Path, help="the app's project database (annotations.sqlite)")
    parser.add_argument(
        "--images", type=Path, help="image folder (required with --coco; --db remembers its own)"
    )


def read_dataset(args: argparse.Namespace) -> list[AnnotatedImage]:
    """The images the parsed dataset options name.

    Raises:
        DatasetError: ``--coco`` without ``--images``, or an unreadable source.
    """
    if args.coco is not None:
        if args.images is None:
            raise DatasetError("--coco needs --images DIR: the folder its file_names are in.")
        return read_coco(args.coco, args.images)
    return read_store(args.db, args.images)
