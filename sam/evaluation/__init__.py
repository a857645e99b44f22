"""Measuring a model like the interactive-segmentation papers do (RITM, SimpleClick, SAM): a
simulated annotator clicks on every object until the mask is right.

- :mod:`.samples`: annotated images as the evaluation and fine-tuning read them (COCO files).
- :mod:`.clicks`: the simulated annotator's next click.
- :mod:`.metrics`: IoU, NoC and the summaries per label and overall.
- :mod:`.protocol`: the click loop over a dataset (:func:`evaluate`).
"""

from .metrics import EvaluationResult, Summary
from .protocol import evaluate
from .samples import AnnotatedImage, AnnotatedObject, check_dataset, read_coco

__all__ = [
    "AnnotatedImage",
    "AnnotatedObject",
    "EvaluationResult",
    "Summary",
    "check_dataset",
    "evaluate",
    "read_coco",
]
