"""The runtime around one loaded network: where it came from, the embedding cache its predictors
share, the lock that serialises encodes, and the decoder's prompt-independent memos.

:class:`sam.modeling.Sam` (SAM) and :class:`sam.modeling.sam2.Sam2` (SAM 2 / 2.1) are the pure
``nn.Module``s; :func:`sam.load_model` wraps one in a :class:`SamEngine` (or its SAM 2 form,
:class:`Sam2Engine`), which every :class:`sam.SamPredictor` of that model shares. The engine
also owns what differs between the families around the network: how pixels are prepared, how
prompt coordinates map to the input frame and how low-res logits return to the image size.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
import torch

from .cache import EmbeddingCache
from .modeling import PreprocessConfig, Sam, SamConfig
from .modeling.mask_decoder import DecoderImage
from .modeling.sam2 import Sam2, Sam2Config, Sam2Features, Sam2PreprocessConfig
from .transforms import (
    preprocess,
    preprocess_square,
    rescale_coords,
    scale_coords,
    upscale_logits,
    upscale_logits_direct,
)

#: The image features one encode gives: SAM's ``(1, 256, 64, 64)`` embedding, or SAM 2's three
#: maps (:data:`sam.modeling.sam2.Sam2Features`).
Features = torch.Tensor | Sam2Features

_VIT_NAMES = {768: "vit-b", 1024: "vit-l", 1280: "vit-h"}

DEFAULT_CACHE_BYTES = 256 * 2**20  # 64 ViT-B embeddings of 4 MiB


class SamEngine:
    """One loaded SAM network and the state its predictors share.

    Holding an embedding is the cache's job alone: the decoder memo refers to the current
    embedding only weakly and holds one image's derived decoder inputs (image keys and the
    first layer's key/value projections, about twice an embedding's bytes), dropped as soon as
    that embedding is freed. So beyond the cache's budget an engine holds at most one image's
    derived tensors, whatever the number of images or users.
    """

    def __init__(
        self,
        model: Any,
        source: str = "",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        family: str | None = None,
    ):
        self.model = model
        #: where the weights came from, for logs, cache keys and the UI
        self.source = source
        #: the model family and size for the page, e.g. "sam-vit-b" or "sam2.1-hiera-tiny"
        self.family = family or self._default_family()
        self.embedding_cache: EmbeddingCache = EmbeddingCache(cache_bytes)
        # Serialising encodes keeps one encoder's activations in memory at a time when several
        # users upload at once.
        self.encoder_lock = threading.Lock()
        # Prompt-independent decoder inputs, computed once: the dense positional encoding (per
        # weights) and the current embedding's DecoderImage (per embedding tensor).
        self._pe_memo: tuple[tuple, torch.Tensor] | None = None
        self._image_memo: tuple[weakref.ref[torch.Tensor], DecoderImage] | None = None

    def _default_family(self) -> str:
        name = _VIT_NAMES.get(self.model.config.vision_config.hidden_size)
        return f"sam-{name}" if name else "sam"

    def set_cache_bytes(self, max_bytes: int) -> None:
        """Replace the embedding cache with an empty one holding at most ``max_bytes``."""
        self.embedding_cache = EmbeddingCache(max_bytes)

    @property
    def config(self) -> SamConfig | Sam2Config:
        return self.model.config

    @property
    def preprocess(self) -> PreprocessConfig | Sam2PreprocessConfig:
        return self.model.preprocess

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        """The image encoder's dtype (the rest of the network runs at fp32)."""
        return self.model.dtype

    def prepare_pixels(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(H, W, 3) uint8`` -> the encoder's input ``(1, 3, 1024, 1024)`` float32 and the
        ``(h, w)`` the image covers in it (SAM: longest side resized to 1024, then padded)."""
        pre = self.preprocess
        return preprocess(image, pre.image_mean, pre.image_std, pre.longest_edge, pre.pad_size)

    def to_input_frame(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """``(..., 2)`` (x, y) in original pixels -> the 1024-input frame (float64)."""
        return scale_coords(coords, original_size, self.preprocess.longest_edge)

    def upscale(
        self,
        low_res: torch.Tensor,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> torch.Tensor:
        """Low-res logits ``(B, K, 256, 256)`` -> logits at the image size ``(B, K, H, W)``."""
        return upscale_logits(low_res, input_size, original_size, self.preprocess.pad_size)

    def mask_prompt(self, mask: np.ndarray) -> np.ndarray:
        """A binary mask ``(H, W)`` -> ``(1, 256, 256)`` float32 ``mask_input`` logits, laid
        out as this family's low-res masks are (SAM: over the padded square)."""
        from .masks import mask_to_logits  # OpenCV: only when a mask becomes a prompt

        return mask_to_logits(mask, pad_size=self.preprocess.pad_size)

    def encode_image(self, pixel_values: torch.Tensor) -> Features:
        """``(B, 3, 1024, 1024)`` normalised pixels -> ``(B, 256, 64, 64)`` embeddings (SAM 2:
        its three feature maps)."""
        return self.model.encode_image(pixel_values)

    def decode(
        self,
        image_embeddings: Features,
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
        image = None
        if mask_input is None:
            image = self._decoder_image(image_embeddings, key_pe)
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

    def _decoder_image(self, image_embeddings: Features, key_pe: torch.Tensor) -> DecoderImage:
        """The decoder's per-image work without a mask prompt, reused while the same embedding
        tensor comes back; the memo does not keep the embedding alive."""
        # SAM 2's features are a tuple (not weakly referable): its 64x64 embedding stands
        # for the image.
        anchor = (
            image_embeddings if isinstance(image_embeddings, torch.Tensor) else image_embeddings[-1]
        )
        memo = self._image_memo
        if memo is not None and memo[0]() is anchor:
            return memo[1]
        image = self.model.prepare_image(image_embeddings, key_pe)
        self._image_memo = (weakref.ref(anchor, self._forget_image), image)
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


class Sam2Engine(SamEngine):
    """A SAM 2 / 2.1 network (:class:`sam.modeling.sam2.Sam2`) behind the same interface: the
    features are three maps, pixels are resized to the square without keeping the aspect ratio,
    coordinates scale per axis, and low-res logits go straight to the image size."""

    model: Sam2
    #: the Hiera positional embedding, per weights and input size (one map: C x 256 x 256
    #: floats, 25 MiB for Hiera-Tiny at fp32)
    _hiera_pe_memo: tuple[tuple, torch.Tensor] | None = None

    def encode_image(self, pixel_values: torch.Tensor) -> Features:
        """``(B, 3, 1024, 1024)`` normalised pixels -> the three feature maps
        (:data:`sam.modeling.sam2.Sam2Features`), reusing the backbone's positional embedding
        (a bicubic interpolation of the weights) from the last encode at this size."""
        return self.model.encode_image(pixel_values, self._hiera_pos_embed(pixel_values))

    def _hiera_pos_embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        backbone = self.model.vision_encoder.backbone
        size = (pixel_values.shape[2], pixel_values.shape[3])
        params = (backbone.pos_embed, backbone.pos_embed_window)
        key = (size, *((p.device, p.dtype, p.data_ptr(), _version(p)) for p in params))
        memo = self._hiera_pe_memo
        if memo is None or memo[0] != key:
            with torch.inference_mode():
                memo = (key, backbone.position_embedding(size))
            self._hiera_pe_memo = memo
        return memo[1]

    def _default_family(self) -> str:
        from .sam2_checkpoint import size_name

        return f"sam2-hiera-{size_name(self.model.config.vision_config.backbone_config)}"

    def prepare_pixels(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(H, W, 3) uint8`` -> ``(1, 3, 1024, 1024)`` float32 covering the whole square."""
        pre = self.model.preprocess
        pixels = preprocess_square(image, pre.image_mean, pre.image_std, pre.image_size)
        return pixels, (pre.image_size, pre.image_size)

    def to_input_frame(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        size = self.model.preprocess.image_size
        return rescale_coords(coords, original_size, (size, size))

    def upscale(
        self,
        low_res: torch.Tensor,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> torch.Tensor:
        return upscale_logits_direct(low_res, original_size)

    def mask_prompt(self, mask: np.ndarray) -> np.ndarray:
        """As :meth:`SamEngine.mask_prompt`; SAM 2's low-res masks span the whole image."""
        from .masks import mask_to_logits

        size = self.model.preprocess.image_size
        return mask_to_logits(mask, input_size=(size, size), pad_size=size)


def as_engine(model: SamEngine | Sam | Sam2) -> SamEngine:
    """``model`` as an engine: what :func:`sam.load_model` returns, or a bare :class:`Sam` /
    :class:`Sam2` (wrapped in an engine of its own, so its predictors share nothing with other
    engines)."""
    if isinstance(model, SamEngine):
        return model
    if isinstance(model, Sam):
        return SamEngine(model)
    if isinstance(model, Sam2):
        return Sam2Engine(model)
    raise TypeError(f"expected what sam.load_model returns, got {type(model).__name__}")
