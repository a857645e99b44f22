"""Fine-tuning SAM on a project's own annotations.

- :mod:`.config`: the settings (:class:`FinetuneConfig`).
- :mod:`.data`: the split by image, cached embeddings and low-res targets.
- :mod:`.prompts`: prompts simulated as in SAM's training.
- :mod:`.losses`: focal + dice + IoU-prediction losses.
- :mod:`.trainer`: the loop (:func:`train`), validated with :mod:`sam.evaluation`.
- :mod:`.save` / :mod:`.curves`: the Hugging Face folder written, and its curves.png.

>>> result = train(load_model("facebook/sam-vit-base"), read_coco(ann, images), "out/")
>>> engine = load_model("out/")   # or transformers.SamModel.from_pretrained("out/")
"""

from .config import TRAINABLE_PREFIXES, FinetuneConfig
from .save import save_model
from .trainer import EpochRecord, FinetuneResult, Progress, check_engine, train

__all__ = [
    "TRAINABLE_PREFIXES",
    "EpochRecord",
    "FinetuneConfig",
    "FinetuneResult",
    "Progress",
    "check_engine",
    "save_model",
    "train",
]
