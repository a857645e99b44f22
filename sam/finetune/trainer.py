"""The fine-tuning loop: SAM's prompt encoder and mask decoder trained on cached image
embeddings with simulated prompts, validated with the evaluation protocol after each epoch,
the best epoch kept on disk.

:func:`train` is the Python API (a UI calls it in a background thread with a ``progress``
callback and a ``stop`` event); ``python -m sam.finetune`` is its command line.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from ..cache import EmbeddingCache
from ..disk_cache import EmbeddingDiskCache
from ..engine import SamEngine
from ..errors import FinetuneError
from ..evaluation import AnnotatedImage, Summary, check_dataset, evaluate
from ..modeling import Sam
from .config import ENCODER_LORA, TRAINABLE_PREFIXES, FinetuneConfig
from .curves import draw_curves
from .data import EmbeddedImages, TrainingObject, split_by_image
from .lora import add_adapters, is_adapter_parameter
from .losses import ambiguity_aware_loss
from .prompts import sample_corrections, sample_first_prompts
from .save import save_model

logger = logging.getLogger(__name__)

#: Byte budget of the training embeddings held in memory (the rest wait in the disk cache).
EMBEDDING_CACHE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: mean training loss (None for epoch 0, the model before training), the
    optimiser steps taken, seconds spent, and the held-out metrics."""

    epoch: int
    train_loss: float | None
    steps: int
    seconds: float
    val: Summary


@dataclass(frozen=True)
class Progress:
    """What a ``progress`` callback receives: ``phase`` is ``"encode"``, ``"train"`` or
    ``"validate"``; ``done``/``total`` count images, steps of the epoch, or objects."""

    phase: str
    epoch: int
    done: int
    total: int
    loss: float | None = None


@dataclass(frozen=True)
class FinetuneResult:
    """The outcome. ``out_dir`` holds the best epoch's weights (``best_epoch`` 0: training
    never beat the starting model); ``stopped_by``: ``"epochs"``, ``"time"``, ``"stop"``
    (the event was set) or ``"interrupt"`` (Ctrl+C)."""

    out_dir: Path
    best_epoch: int
    baseline: Summary
    best: Summary
    history: tuple[EpochRecord, ...]
    stopped_by: str


def validation_score(summary: Summary) -> float:
    """What the best epoch maximises: held-out mIoU averaged over 1, 3 and 5 clicks."""
    return (summary.miou_1click + summary.miou_3click + summary.miou_5click) / 3


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> LambdaLR:
    """The learning rate rising linearly over the first tenth of the steps (a fresh AdamW's
    first updates are its largest), then a cosine decay to 0 at ``total_steps``."""
    warmup = max(1, total_steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (
            1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup)))
        )

    return LambdaLR(optimizer, factor)


def trainable_copy(model: Sam, mode: str) -> Sam:
    """A copy of ``model`` to train; only the parameters ``mode`` trains require gradients.
    The frozen image encoder's weights are shared (no second copy of the largest part), except
    with ``encoder-lora``, whose copy of the encoder gets the adapters. The caller's model is
    never changed, so annotation can go on with it meanwhile."""
    shared: dict[int, object] = {}
    if mode != ENCODER_LORA:
        shared = {id(p): p for p in model.vision_encoder.parameters()}
        shared.update({id(b): b for b in model.vision_encoder.buffers()})
    clone = copy.deepcopy(model, memo=shared)
    prefixes = TRAINABLE_PREFIXES[mode]
    for name, param in clone.named_parameters():
        if id(param) not in shared:  # the shared encoder is never run with gradients here
            param.requires_grad_(name.startswith(prefixes))
    if mode == ENCODER_LORA:
        add_adapters(clone.vision_encoder)
    return clone


def trainable_parameters(model: Sam, mode: str) -> list[torch.nn.Parameter]:
    """The parameters ``mode`` trains."""
    prefixes = TRAINABLE_PREFIXES[mode]
    return [
        p
        for name, p in model.named_parameters()
        if name.startswith(prefixes) or (mode == ENCODER_LORA and is_adapter_parameter(name))
    ]


def interactive_loss(
    model: Sam,
    features: torch.Tensor,
    targets: torch.Tensor,
    corrections: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """SAM's interactive training loss on one batch: a first prompt (box or point), then
    ``corrections`` clicks on the error of the best candidate with its logits fed back as
    ``mask_input``; the loss averaged over the rounds.

    ``features`` ``(B, C, h, w)`` image embeddings, ``targets`` ``(B, 4h, 4w)`` bool low-res
    masks -> scalar loss with gradients for ``model``'s trainable parameters.
    """
    scale = model.config.prompt_encoder_config.image_size / targets.shape[-1]
    rows = torch.arange(targets.shape[0])
    # Prompts are sampled on the CPU (one seeded generator), the loss on the model's device.
    truth = targets.to(device=model.mask_decoder.iou_token.weight.device, dtype=torch.float32)
    prompts = sample_first_prompts(targets, scale, generator)
    mask_input = None
    total = truth.new_zeros(())
    rounds = 1 + corrections
    for round_ in range(rounds):
        logits, iou = model.decode(
            features,
            prompts.points,
            prompts.labels,
            prompts.boxes,
            mask_input,
            multimask_output=round_ == 0 and prompts.boxes is None,
        )
        loss, best = ambiguity_aware_loss(logits, iou, truth)
        total = total + loss
        if round_ + 1 < rounds:
            chosen = logits[rows, best].detach()
            points, labels = sample_corrections(targets, (chosen > 0).cpu(), scale, generator)
            prompts = prompts.with_point(points, labels)
            mask_input = chosen[:, None]
    return total / rounds


class _Stopped(Exception):
    """Training ended early (time budget or stop event); ``reason`` as in FinetuneResult."""

    def __init__(self, reason: str, loss: float | None, steps: int) -> None:
        super().__init__(reason)
        self.reason, self.loss, self.steps = reason, loss, steps


def train(
    engine: SamEngine,
    images: Sequence[AnnotatedImage],
    out_dir: str | Path,
    config: FinetuneConfig | None = None,
    *,
    cache_dir: str | Path | None = None,
    progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
    show_progress: bool = False,
) -> FinetuneResult:
    """Fine-tune ``engine``'s model on ``images`` and write the best epoch to ``out_dir``.

    ``out_dir`` then holds a Hugging Face folder (``load_model(out_dir)``), ``training.json``
    (data, settings, per-epoch metrics) and ``curves.png``. The embeddings go to the disk
    cache under ``cache_dir`` (a temporary folder when None). Setting ``stop`` or Ctrl+C ends
    training after the current step; the best checkpoint so far stays in ``out_dir``.

    Raises:
        DatasetError: the dataset is unusable (checked before any training).
        FinetuneError: the settings are.
    """
    config = config or FinetuneConfig()
    check_engine(engine, config)
    if config.train == ENCODER_LORA and engine.device.type == "cpu":
        logger.warning(
            "--train encoder-lora runs the image encoder forward and backward on every step: "
            "a GPU is recommended (on a CPU keep --batch-size small)."
        )
    check_dataset(images)
    train_images, val_images = split_by_image(images, config.val_fraction, config.seed)
    out_dir = Path(out_dir)  # created by the first save, once the data is usable
    with tempfile.TemporaryDirectory(prefix="sam-finetune-") as scratch:
        disk_cache = EmbeddingDiskCache(cache_dir or scratch, engine)
        run = _Run(engine, config, disk_cache, progress, stop, show_progress)
        return run.fit(train_images, val_images, out_dir)


def check_engine(engine: SamEngine, config: FinetuneConfig) -> None:
    """Raise :class:`FinetuneError` when ``config`` cannot train ``engine``'s model (checked
    before any work, so a UI can refuse at once)."""
    config.check()
    if config.train == ENCODER_LORA and not isinstance(engine.model, Sam):
        raise FinetuneError(
            "encoder-lora adapts SAM's ViT encoder; SAM 2's Hiera encoder has no adapters "
            "yet: train prompt-decoder or decoder with SAM 2 models."
        )


class _Run:
    """One fine-tuning run's state."""

    def __init__(
        self,
        engine: SamEngine,
        config: FinetuneConfig,
        disk_cache: EmbeddingDiskCache,
        progress: Callable[[Progress], None] | None,
        stop: threading.Event | None,
        show_progress: bool,
    ) -> None:
        self.engine = engine
        self.config = config
        self.disk_cache = disk_cache
        self.progress = progress or (lambda _: None)
        self.stop = stop
        self.show_progress = show_progress
        self.started = time.monotonic()
        self.deadline = (
            None if config.max_minutes is None else self.started + 60 * config.max_minutes
        )
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.model = trainable_copy(engine.model, config.train)

    def fit(
        self,
        train_images: list[AnnotatedImage],
        val_images: list[AnnotatedImage],
        out_dir: Path,
    ) -> FinetuneResult:
        # Validation reads the same disk cache, so every image is encoded exactly once here.
        data = self._embed(train_images + val_images)
        train_objects = [o for o in data.objects if o.image < len(train_images)]
        history = [EpochRecord(0, None, 0, 0.0, self._validate(val_images, 0))]
        best = history[0]
        save_model(self.model, out_dir)
        steps_per_epoch = math.ceil(len(train_objects) / self.config.batch_size)
        optimizer = torch.optim.AdamW(
            trainable_parameters(self.model, self.config.train),
            lr=self.config.lr,
            weight_decay=self.config.weight_decay,
        )
        schedule = warmup_cosine(optimizer, self.config.epochs * steps_per_epoch)
        stopped_by = "epochs"
        try:
            for epoch in range(1, self.config.epochs + 1):
                began = time.monotonic()
                try:
                    loss, steps = self._epoch(epoch, data, train_objects, optimizer, schedule)
                except _Stopped as stopped:
                    loss, steps = stopped.loss, stopped.steps
                    stopped_by = stopped.reason
                if steps:
                    record = EpochRecord(
                        epoch,
                        loss,
                        steps,
                        round(time.monotonic() - began, 3),
                        self._validate(val_images, epoch),
                    )
                    history.append(record)
                    if validation_score(record.val) > validation_score(best.val):
                        best = record
                        save_model(self.model, out_dir)
                    # The curves grow as the run goes, so a page can show them after each epoch.
                    draw_curves(history, out_dir / "curves.png", self.config.val_max_clicks)
                logger.info("epoch %d: loss %s, validation %s", epoch, loss, history[-1].val)
                if stopped_by != "epochs":
                    break
        except KeyboardInterrupt:
            stopped_by = "interrupt"
            logger.warning("Interrupted: keeping the best epoch so far (%d)", best.epoch)
        result = FinetuneResult(
            out_dir, best.epoch, history[0].val, best.val, tuple(history), stopped_by
        )
        self._write_report(result, data, train_images, val_images)
        return result

    def _embed(self, images: list[AnnotatedImage]) -> EmbeddedImages:
        return EmbeddedImages(
            self.engine,
            images,
            self.disk_cache,
            EmbeddingCache(EMBEDDING_CACHE_BYTES),
            progress=self.show_progress,
            on_image=lambda done: self.progress(Progress("encode", 0, done, len(images))),
        )

    def _check_stop(self, loss: float | None, steps: int) -> None:
        if self.stop is not None and self.stop.is_set():
            raise _Stopped("stop", loss, steps)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise _Stopped("time", loss, steps)

    def _epoch(
        self,
        epoch: int,
        data: EmbeddedImages,
        objects: list[TrainingObject],
        optimizer: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LRScheduler,
    ) -> tuple[float | None, int]:
        """One pass over ``objects`` in a seeded order: (mean loss, steps)."""
        self.model.train()
        order = torch.randperm(len(objects), generator=self.generator).tolist()
        size = self.config.batch_size
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        total, steps = 0.0, 0
        bar = tqdm(batches, desc=f"epoch {epoch}", unit="step", disable=not self.show_progress)
        for batch in bar:
            self._check_stop(total / steps if steps else None, steps)
            chosen = [objects[i] for i in batch]
            with torch.enable_grad():
                if self.config.train == ENCODER_LORA:  # the adapted encoder runs every step
                    pixels, rows = data.pixel_batch(chosen)
                    features, targets = self.model.encode_image(pixels)[rows], data.targets(chosen)
                else:
                    features, targets = data.batch(chosen)
                loss = interactive_loss(
                    self.model, features, targets, self.config.corrections, self.generator
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
            steps += 1
            bar.set_postfix(loss=f"{total / steps:.4f}")
            self.progress(Progress("train", epoch, steps, len(batches), total / steps))
        return total / steps, steps

    def _validate(self, images: list[AnnotatedImage], epoch: int) -> Summary:
        """The evaluation protocol on the held-out images, with a fresh engine around the
        model being trained (nothing memoised from earlier weights)."""
        self.model.eval()
        total = sum(len(image.objects) for image in images)
        with torch.inference_mode():
            result = evaluate(
                type(self.engine)(self.model, self.engine.source, family=self.engine.family),
                images,
                max_clicks=self.config.val_max_clicks,
                # The cached embeddings are the original encoder's, not the adapted one's.
                disk_cache=None if self.config.train == ENCODER_LORA else self.disk_cache,
                progress=lambda done, _: self.progress(Progress("validate", epoch, done, total)),
            )
        return result.overall

    def _write_report(
        self,
        result: FinetuneResult,
        data: EmbeddedImages,
        train_images: list[AnnotatedImage],
        val_images: list[AnnotatedImage],
    ) -> None:
        n_train_objects = sum(len(image.objects) for image in train_images)
        report = {
            "model": self.engine.source,
            "data": {
                "train_images": len(train_images),
                "val_images": len(val_images),
                "train_objects": n_train_objects,
                "val_objects": len(data.objects) - n_train_objects,
                "val_image_names": [image.name for image in val_images],
            },
            "settings": dataclasses.asdict(self.config),
            "best_epoch": result.best_epoch,
            "stopped_by": result.stopped_by,
            "seconds": round(time.monotonic() - self.started, 3),
            "epochs": [asdict(record) for record in result.history],
        }
        (result.out_dir / "training.json").write_text(json.dumps(report, indent=2))
        draw_curves(result.history, result.out_dir / "curves.png", self.config.val_max_clicks)
