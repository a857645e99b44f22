"""Text prompts (Grounded SAM): Grounding DINO turns "dog. cat." into boxes, SAM into masks.

Grounding DINO comes from ``transformers``, an optional extra (``pip install '.[text]'``); the
rest of the engine never imports it. Without the extra, or when the detector cannot be loaded,
:class:`TextPromptError` says so and what to do.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .automatic import box_nms
from .checkpoint import _hub_reachable
from .device import resolve_device
from .errors import TextPromptError
from .image_io import load_image
from .predictor import MAX_BOXES, SamPredictor

logger = logging.getLogger(__name__)

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"


@dataclass(frozen=True)
class TextPromptConfig:
    """Detection thresholds (Grounded SAM's defaults).

    Attributes:
        box_threshold: minimum box confidence (max over the prompt's tokens).
        text_threshold: minimum token score for a word to be part of a box's phrase.
        nms_threshold: box IoU above which the lower-scored duplicate is dropped.
    """

    box_threshold: float = 0.3
    text_threshold: float = 0.25
    nms_threshold: float = 0.5


@dataclass(frozen=True)
class Detection:
    """A box ``[x0, y0, x1, y1]`` in original-image pixels, its confidence and phrase."""

    box: tuple[float, float, float, float]
    score: float
    phrase: str


@dataclass
class TextProposal:
    """A detected object with its SAM mask ``(H, W) bool`` and the mask's predicted IoU."""

    detection: Detection
    mask: np.ndarray
    mask_score: float


def normalise_prompt(text: str) -> str:
    """Lower-case phrases, each ending with ``.``, as Grounding DINO was trained to read them:
    ``"Dog, cat"`` -> ``"dog. cat."``."""
    parts = [p.strip() for p in text.replace(",", ".").replace(";", ".").split(".")]
    phrases = [p.lower() for p in parts if p]
    if not phrases:
        raise TextPromptError("Type what to find, e.g. 'dog. cat.'")
    return " ".join(f"{p}." for p in phrases)


def clean_phrase(phrase: str, query: str) -> str:
    """A label from a detected phrase: tokenizer markers and the prompt's dots removed
    (``"dog. [SEP]"`` -> ``"dog"``); the query's first phrase when nothing is left."""
    words = re.sub(r"\[(?:CLS|SEP|PAD|UNK|MASK)\]", " ", phrase).replace(".", " ").split()
    if words:
        return " ".join(words)
    return query.split(".")[0].strip() or query.strip()


class GroundingDetector:
    """Grounding DINO from a hub repo id or a local folder saved by ``save_pretrained``."""

    def __init__(self, source: str = DEFAULT_DETECTOR, device: str | torch.device = "auto") -> None:
        try:
            from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor
        except ImportError as exc:
            raise TextPromptError(
                "Text prompts need the optional extra: pip install '.[text]' (adds transformers)."
            ) from exc
        if source.startswith(("/", "./", "../", "~")) and not Path(source).expanduser().is_dir():
            raise TextPromptError(
                f"The text detector folder {source} does not exist: pass a folder saved with "
                "save_pretrained (config.json, model.safetensors, tokenizer and processor files)."
            )
        source = str(Path(source).expanduser()) if source.startswith("~") else source
        self.device = resolve_device(device)
        # Offline, transformers would retry the hub for minutes: go straight to the cache.
        cache_only = not Path(source).is_dir() and not _hub_reachable()
        try:
            self.processor = AutoProcessor.from_pretrained(source, local_files_only=cache_only)
            model = AutoModelForZeroShotObjectDetection.from_pretrained(
                source, local_files_only=cache_only
            )
        except (OSError, ValueError) as exc:
            reason = str(exc).splitlines()[0].rstrip(".")
            raise TextPromptError(
                f"Could not load the text detector {source!r}: {reason}. "
                "It downloads from the Hugging Face hub on first use; offline, pass a local "
                "folder saved with save_pretrained."
            ) from exc
        self.model = model.to(self.device).eval()
        self.source = source

    def detect(
        self, image: Any, text: str, config: TextPromptConfig | None = None
    ) -> list[Detection]:
        """Boxes for every phrase of ``text`` found in ``image``, best first, after NMS."""
        cfg = config or TextPromptConfig()
        array = load_image(image, max_pixels=None)
        height, width = array.shape[:2]
        prompt = normalise_prompt(text)
        inputs = self.processor(images=Image.fromarray(array), text=prompt, return_tensors="pt")
        inputs = inputs.to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        result = self.processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=cfg.box_threshold,
            text_threshold=cfg.text_threshold,
            target_sizes=[(height, width)],
        )[0]
        boxes = result["boxes"].float().cpu().numpy().reshape(-1, 4)
        boxes = np.clip(boxes, 0, [width, height, width, height])
        scores = result["scores"].float().cpu().numpy()
        phrases = list(result["text_labels"] if "text_labels" in result else result["labels"])
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        idx = np.flatnonzero(valid)
        keep = idx[box_nms(boxes[idx], scores[idx], cfg.nms_threshold)]
        detections = [
            Detection(tuple(float(v) for v in boxes[i]), float(scores[i]), str(phrases[i]))
            for i in keep
        ]
        logger.info("Found %d object(s) for %r", len(detections), prompt)
        return detections


def segment_by_text(
    predictor: SamPredictor,
    detector: GroundingDetector,
    image: Any,
    text: str,
    config: TextPromptConfig | None = None,
) -> list[TextProposal]:
    """Detect the phrases of ``text`` and segment every box with SAM.

    Boxes are decoded in batches of :data:`sam.predictor.MAX_BOXES` (Grounding DINO can return
    hundreds on a busy photo with a low threshold).
    """
    array = load_image(image, max_pixels=None)
    detections = detector.detect(array, text, config)
    if not detections:
        return []
    predictor.set_image(array)
    proposals = []
    for start in range(0, len(detections), MAX_BOXES):
        batch = detections[start : start + MAX_BOXES]
        masks, scores, _ = predictor.predict_boxes(
            np.array([d.box for d in batch]), multimask_output=False
        )
        proposals.extend(
            TextProposal(detection=d, mask=masks[i, 0], mask_score=float(scores[i, 0]))
            for i, d in enumerate(batch)
        )
    return proposals
