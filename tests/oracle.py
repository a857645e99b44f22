"""Run transformers' SamModel + SamProcessor the documented way, as the reference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from checkpoints import hf_processor


@dataclass
class Reference:
    embedding: torch.Tensor  # (1, C, 64, 64)
    masks: np.ndarray  # (K, H, W) bool, best first
    scores: np.ndarray  # (K,) float32, best first
    logits: np.ndarray  # (K, 256, 256) float32, best first

    @property
    def answer(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(masks, scores, logits): what ``SamPredictor.predict`` returns."""
        return self.masks, self.scores, self.logits


def hf_predict(
    model,
    image: np.ndarray,
    points=None,
    labels=None,
    box=None,
    mask_input: np.ndarray | None = None,
    multimask: bool = True,
    embedding: torch.Tensor | None = None,
) -> Reference:
    processor = hf_processor()
    kwargs = {}
    if points is not None:
        kwargs["input_points"] = [[list(map(list, points))]]
        kwargs["input_labels"] = [[list(labels)]]
    if box is not None:
        kwargs["input_boxes"] = [[list(box)]]
    inputs = processor(images=image, return_tensors="pt", **kwargs)
    with torch.no_grad():
        if embedding is None:
            embedding = model.get_image_embeddings(inputs["pixel_values"])
        out = model(
            image_embeddings=embedding,
            input_points=inputs.get("input_points"),
            input_labels=inputs.get("input_labels"),
            input_boxes=inputs.get("input_boxes"),
            input_masks=None if mask_input is None else torch.as_tensor(mask_input)[None, None],
            multimask_output=multimask,
        )
    masks = processor.image_processor.post_process_masks(
        out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
    )[0][0]
    scores = out.iou_scores[0, 0]
    order = torch.argsort(scores, descending=True, stable=True)
    return Reference(
        embedding=embedding,
        masks=masks[order].numpy(),
        scores=scores[order].numpy(),
        logits=out.pred_masks[0, 0][order].numpy(),
    )
