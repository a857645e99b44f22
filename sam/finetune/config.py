"""Fine-tuning settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FinetuneError

#: What ``train`` may update: SAM's mask decoder with or without its prompt encoder; with
#: ``encoder-lora`` also low-rank adapters on the image encoder's attention (:mod:`.lora`).
TRAINABLE_PREFIXES: dict[str, tuple[str, ...]] = {
    "prompt-decoder": ("prompt_encoder.", "mask_decoder."),
    "decoder": ("mask_decoder.",),
    "encoder-lora": ("prompt_encoder.", "mask_decoder."),
}

#: The mode that runs the image encoder on every step (no cached embeddings).
ENCODER_LORA = "encoder-lora"


@dataclass(frozen=True)
class FinetuneConfig:
    """How to fine-tune.

    ``train``: a key of :data:`TRAINABLE_PREFIXES`. ``epochs``: passes over the training
    objects; ``max_minutes``: stop earlier when the time is up (None: no limit). ``lr``: AdamW
    learning rate (cosine decay to 0 over ``epochs``). ``corrections``: correction clicks
    simulated after the first prompt of each training example. ``val_max_clicks``: clicks of
    the evaluation protocol run on the held-out images after each epoch.
    """

    train: str = "prompt-decoder"
    epochs: int = 10
    max_minutes: float | None = None
    lr: float = 1e-4
    weight_decay: float = 0.01
    batch_size: int = 8
    val_fraction: float = 0.2
    seed: int = 0
    corrections: int = 2
    val_max_clicks: int = 20

    def check(self) -> None:
        """Raise :class:`FinetuneError` for settings no training can run with."""
        if self.train not in TRAINABLE_PREFIXES:
            raise FinetuneError(
                f"--train {self.train!r} is not available; choose one of "
                f"{', '.join(TRAINABLE_PREFIXES)}."
            )
        for name in ("epochs", "batch_size", "val_max_clicks"):
            if getattr(self, name) < 1:
                raise FinetuneError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if not self.lr > 0:
            raise FinetuneError(f"the learning rate must be positive, got {self.lr}.")
        if self.corrections < 0:
            raise FinetuneError(f"corrections cannot be negative, got {self.corrections}.")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise FinetuneError(f"--max-minutes must be positive, got {self.max_minutes}.")
