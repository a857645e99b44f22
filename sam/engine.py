"""The runtime around one loaded network: where it came from, the embedding cache its predictors
share, the lock that serialises encodes, and the decoder's prompt-independent memos.

:class:`sam.modeling.Sam` is the pure ``nn.Module``; :func:`sam.load_model` wraps it in a
:class:`SamEngine`, which every :class:`sam.SamPredictor` of that model shares.
"""

from __future__ import annotations

import threading
import weakref

import torch

from .cache import EmbeddingCache
from .modeling import PreprocessConfig, Sam, SamConfig
from .modeling.mask_decoder import DecoderImage

DEFAULT_CACHE_BYTES = 256 * 2**20  # 64 ViT-B embeddings of 4 MiB


class SamEngine:
    """One loaded SAM network and the state its predictors share.

    Holding an embedding is the cache's job alone: the decoder memo refers to the current
    embedding only weakly and holds one image's derived decoder inputs (image keys and the
    first layer's key/value projections, about twice an embedding's bytes), dropped as soon as
    that embedding is freed. So beyond the cache's budget an engine holds at most one image's
    derived tensors, whatever the number of images or users.
    """

    def __init__(self, model: Sam, source: str = "", cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.model = model
        #: where the weights came from, for logs, cache keys and the UI
        self.source = source
        self.embedding_cache: EmbeddingCache = EmbeddingCache(cache_bytes)
        # Serialising encodes keeps one encoder's activations in memory at a time when several
        # users upload at once.
        self.encoder_lock = threading.Lock()
        # Prompt-independent decoder inputs, computed once: the dense positional encoding (per
        # weights) and the current embedding's DecoderImage (per embedding tensor).
        self._pe_memo: tuple[tuple, torch.Tensor] | None = None
        self._image_memo: tuple[weakref.ref[torch.Tensor], DecoderImage] | None = None

    def set_cache_bytes(self, max_bytes: int) -> None:
        """Replace the embedding cache with an empty one holding at most ``max_bytes``."""
        self.embedding_cache = EmbeddingCache(max_bytes)

    @property
    def config(self) -> SamConfig:
        return self.model.config

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.model.preprocess

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        """The image encoder's dtype (the rest of the network runs at fp32)."""
        return self.model.dtype

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 1024, 1024)`` normalised pixels -> ``(B, 256, 64, 64)`` embeddings."""
        return self.model.encode_image(pixel_values)

    def decode(
        self,
        image_embeddings: torch.Tensor,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`sam.modeling.Sam.decode` reusing the prompt-independent work across calls on
        the same embedding tensor (every click on the image a predictor holds).

        Shapes as there: ``(1, 256, 64, 64)`` embedding, B prompts -> low-res logits
        ``(B, K, 256, 256)`` float32 and IoU ``(B, K)``.
        """
        key_pe = self._key_pe()
        # A mask prompt makes the image keys prompt-dependent: nothing to reuse then.
        image = None if mask_input is not None else self._decoder_image(image_embeddings, key_pe)
        return self.model.decode(
            image_embeddings,
            points,
            labels,
            boxes,
            mask_input,
            multimask_output,
            key_pe=key_pe,
            image=image,
        )

    def _key_pe(self) -> torch.Tensor:
        """The dense positional encoding as tokens ``(1, h*w, C)``, computed once per weights
        (recomputed if the Fourier matrix is moved or changed)."""
        param = self.model.shared_image_embedding.positional_embedding
        key = (param.device, param.dtype, param.data_ptr(), _version(param))
        memo = self._pe_memo
        if memo is None or memo[0] != key:
            with torch.inference_mode():
                memo = (key, self.model.key_pe())
            self._pe_memo = memo
        return memo[1]

    def _decoder_image(self, image_embeddings: torch.Tensor, key_pe: torch.Tensor) -> DecoderImage:
        """The decoder's per-image work without a mask prompt, reused while the same embedding
        tensor comes back; the memo does not keep the embedding alive."""
        memo = self._image_memo
        if memo is not None and memo[0]() is image_embeddings:
            return memo[1]
        image = self.model.prepare_image(image_embeddings, key_pe)
        self._image_memo = (weakref.ref(image_embeddings, self._forget_image), image)
        return image

    def _forget_image(self, ref: weakref.ref[torch.Tensor]) -> None:
        """Drop the memo of an embedding that was freed (evicted and no predictor holds it)."""
        memo = self._image_memo
        if memo is not None and memo[0] is ref:
            self._image_memo = None


def _version(tensor: torch.Tensor) -> int:
    """The tensor's in-place version counter (inference tensors have none: -1)."""
    try:
        return tensor._version
    except RuntimeError:
        return -1


def as_engine(model: SamEngine | Sam) -> SamEngine:
    """``model`` as an engine: what :func:`sam.load_model` returns, or a bare :class:`Sam`
    (wrapped in an engine of its own, so its predictors share nothing with other engines)."""
    if isinstance(model, SamEngine):
        return model
    if isinstance(model, Sam):
        return SamEngine(model)
    raise TypeError(f"expected what sam.load_model returns, got {type(model).__name__}")
