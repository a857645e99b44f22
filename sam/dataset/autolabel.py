"""Batch auto-labelling of a project folder, here or on a Ray cluster.

``python -m sam.autolabel --model M --images DIR (--everything | --text "dog. cat.")
[--db PROJECT.sqlite] [--ray auto|ADDRESS|local ...]`` runs segment everything or Grounding
DINO + SAM on every image and stores what it finds in the project's database as objects
awaiting review (``reviewed = 0``, ``source`` "everything" or "text"; text proposals carry their
phrase as label). Annotators accept or reject them in the app; until then they are neither
exported nor counted as annotations.

Workers (this process, or Ray actors) only compute; the driver writes each image's proposals
in one transaction as they arrive, so a killed run loses at most the images in flight. Images
labelled before (for the same ``--everything``/``--text`` kind, whatever was found), or that
someone has started annotating, are skipped: a rerun does the rest. The embedding store is
shared with ``sam.precompute`` and the app (embeddings computed here are not computed again
when the image is opened).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..automatic import AutoMaskConfig, AutomaticMaskGenerator
from ..checkpoint import load_model
from ..device import PRECISION_CHOICES
from ..disk_cache import EmbeddingDiskCache
from ..errors import SamError
from ..image_io import load_image
from ..masks import mask_to_rle
from ..precompute import DEFAULT_CACHE_DIR, add_ray_args, check_writable, report_problems
from ..predictor import SamPredictor
from ..scale import EncoderWorker
from ..text_prompt import (
    DEFAULT_DETECTOR,
    GroundingDetector,
    TextPromptConfig,
    clean_phrase,
    normalise_prompt,
    segment_by_text,
)
from .store import AnnotationStore

logger = logging.getLogger(__name__)

#: One proposal as a worker returns it: (COCO RLE, SAM's predicted IoU, prompts, phrase).
Found = tuple[dict[str, Any], float, dict[str, Any], str | None]
#: One image's result: (relative path, error message or "", proposals).
Result = tuple[str, str, list[Found]]


@dataclass(frozen=True)
class Task:
    """What to look for: segment everything (``text`` empty) or the phrases of ``text``."""

    text: str = ""
    everything: AutoMaskConfig = field(default_factory=AutoMaskConfig)
    detector: str = DEFAULT_DETECTOR
    thresholds: TextPromptConfig = field(default_factory=TextPromptConfig)

    @property
    def source(self) -> str:
        return "text" if self.text else "everything"


class Labeller:
    """One model (and detector) turning images into proposals; runs in this process or, as
    :class:`RayLabeller`, in a Ray actor."""

    def __init__(self, predictor: SamPredictor, folder: Path, task: Task) -> None:
        self.predictor, self.folder, self.task = predictor, folder, task
        device = str(predictor.engine.device)
        self.detector = GroundingDetector(task.detector, device=device) if task.text else None
        self.generator = AutomaticMaskGenerator(predictor.engine, task.everything)

    def label(self, batch: list[str]) -> list[Result]:
        return [self._one(rel) for rel in batch]

    def _one(self, rel: str) -> Result:
        try:
            image = load_image(self.folder / rel)
        except SamError as exc:
            logger.warning("%s: %s", rel, exc)
            return rel, str(exc), []
        if self.detector is None:
            found = [
                (p.rle(), p.predicted_iou, _prompts(points=[[*map(int, p.point), 1]]), None)
                for p in self.generator.generate(image, predictor=self.predictor)
            ]
        else:
            found = [
                (
                    mask_to_rle(p.mask),
                    p.mask_score,
                    _prompts(box=[round(v) for v in p.detection.box]),
                    clean_phrase(p.detection.phrase, self.task.text),
                )
                for p in segment_by_text(
                    self.predictor, self.detector, image, self.task.text, self.task.thresholds
                )
            ]
        return rel, "", found


def _prompts(points: list[list[int]] | None = None, box: list[int] | None = None) -> dict:
    """The prompts record the store keeps (as the app writes it): what made the mask."""
    return {"points": points or [], "box": box}


@dataclass
class Outcome:
    """What a run did: images labelled, proposals written, images skipped, failures, lost."""

    labelled: int = 0
    proposals: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)

    def line(self) -> str:
        failed = f" ({', '.join(sorted(self.failed))})" if self.failed else ""
        return (
            f"labelled {self.labelled} ({self.proposals} proposals), skipped {self.skipped}, "
            f"failed {len(self.failed)}{failed}"
        )


def pending_images(store: AnnotationStore, source: str) -> tuple[list[str], int]:
    """Images to label (not started, not labelled for ``source`` yet) and how many are
    skipped."""
    busy = store.autolabelled(source)
    records = store.images()
    todo = [r.path for r in records if r.status == "not_started" and r.id not in busy]
    return todo, len(records) - len(todo)


def writer(store: AnnotationStore, task: Task, outcome: Outcome) -> Callable[[list[Result]], None]:
    """The driver's side: each image's proposals into the store, in one transaction each."""

    def write(results: list[Result]) -> None:
        for rel, error, found in results:
            if error:
                outcome.failed[rel] = error
                continue
            image_id = store.image_id(rel)
            rows = [
                (rle, score, prompts, store.ensure_label(phrase).id if phrase else None)
                for rle, score, prompts, phrase in found
            ]
            store.add_proposals(image_id, task.source, rows)
            outcome.labelled += 1
            outcome.proposals += len(rows)

    return write


def autolabel(labeller: Labeller, store: AnnotationStore, progress: bool = True) -> Outcome:
    """Label every pending image of the store's folder in this process."""
    todo, skipped = pending_images(store, labeller.task.source)
    outcome = Outcome(skipped=skipped)
    write = writer(store, labeller.task, outcome)
    for rel in tqdm(todo, desc=f"auto-labelling ({labeller.task.source})", unit="image",
                    disable=not progress):  # fmt: skip
        write(labeller.label([rel]))
    return outcome


def autolabel_on_ray(
    model: str,
    store: AnnotationStore,
    folder: Path,
    cache_root: Path,
    task: Task,
    options: Any,
    device: str = "auto",
    precision: str = "auto",
) -> Outcome:
    """Label every pending image on a pool of Ray actors (``options``: ``sam.scale.RayOptions``);
    this process writes the store."""
    from ..scale import connected, run_batches, start_actors

    folder, cache_root = folder.resolve(), cache_root.resolve()
    todo, skipped = pending_images(store, task.source)
    outcome = Outcome(skipped=skipped)
    if not todo:
        return outcome
    probe = check_writable(cache_root)
    try:
        with connected(options.address) as ray:
            args = (model, device, precision, str(cache_root), str(folder), probe, task)
            actors = start_actors(ray, RayLabeller, options, *args)
            try:
                outcome.lost = run_batches(
                    ray, actors, "label", todo, options.batch_size,
                    writer(store, task, outcome), f"auto-labelling on {len(actors)} worker(s)",
                )  # fmt: skip
            finally:
                for actor in actors:
                    ray.kill(actor)
    finally:
        (cache_root / probe).unlink(missing_ok=True)
    return outcome


class RayLabeller(EncoderWorker):
    """The Ray actor: an :class:`~sam.scale.EncoderWorker` (the model, the store checks) that
    labels instead of only encoding."""

    def __init__(self, *args: Any) -> None:
        *encoder_args, task = args
        super().__init__(*encoder_args)
        self.labeller: Labeller | None = None
        if self.predictor is not None:
            try:
                self.labeller = Labeller(self.predictor, self.folder, task)
            except SamError as exc:
                self._problem = f"A worker cannot start labelling: {exc}"

    def label(self, batch: list[str]) -> list[Result]:
        assert self.labeller is not None  # the driver only calls workers without a problem
        return self.labeller.label(batch)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sam.autolabel",
        description="Propose objects for every image of a folder (segment everything or text "
        "prompts) into the project database, for review in the app.",
    )
    parser.add_argument("--model", default="facebook/sam-vit-base", help="model source")
    parser.add_argument("--images", required=True, type=Path, help="folder of images")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--everything", action="store_true", help="segment everything")
    what.add_argument("--text", help="what to find, e.g. 'dog. cat.' (needs the [text] extra)")
    parser.add_argument("--db", type=Path, help="project database (default: the folder's)")
    parser.add_argument(
        "--cache-dir", type=Path, help=f"embedding folder (default: IMAGES/{DEFAULT_CACHE_DIR})"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument(
        "--precision", default="auto", choices=PRECISION_CHOICES, help="encoder precision"
    )
    defaults = AutoMaskConfig()
    parser.add_argument(
        "--points-per-side", type=int, default=defaults.points_per_side,
        help="everything: grid points per image side (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--pred-iou-thresh", type=float, default=defaults.pred_iou_thresh,
        help="everything: minimum predicted IoU (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--stability-score-thresh", type=float, default=defaults.stability_score_thresh,
        help="everything: minimum stability score (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, help="Grounding DINO source")
    parser.add_argument("--box-threshold", type=float, default=0.3, help="text: box confidence")
    parser.add_argument("--text-threshold", type=float, default=0.25, help="text: word score")
    add_ray_args(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        task = Task(
            text=normalise_prompt(args.text) if args.text else "",
            everything=AutoMaskConfig(
                points_per_side=args.points_per_side,
                pred_iou_thresh=args.pred_iou_thresh,
                stability_score_thresh=args.stability_score_thresh,
            ),
            detector=args.detector,
            thresholds=TextPromptConfig(args.box_threshold, args.text_threshold),
        )
        root = args.cache_dir or args.images / DEFAULT_CACHE_DIR
        with AnnotationStore.for_folder(args.images, args.db) as store:
            if args.ray:
                from ..scale import RayOptions  # needs ray: imported only here

                outcome = autolabel_on_ray(
                    args.model, store, args.images, root, task, RayOptions.from_args(args),
                    args.device, args.precision,
                )  # fmt: skip
            else:
                (root / check_writable(root)).unlink()
                model = load_model(args.model, device=args.device, dtype=args.precision)
                predictor = SamPredictor(model, EmbeddingDiskCache(root, model))
                outcome = autolabel(Labeller(predictor, args.images, task), store)
    except (SamError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{outcome.line()} -> {store.path} (review them in the app)")
    return report_problems(outcome.failed, outcome.lost)
