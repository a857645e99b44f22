"""SamPredictor: encode an image once, then decode prompts against it as often as needed.

Coordinates are (x, y) in original-image pixels. Points must lie inside the image (0 <= x <= W,
0 <= y <= H) or a :class:`PromptError` says which point is outside; boxes are clipped to the
image, and a box that is empty, inverted, or entirely outside the image is rejected. One prompt
holds at most :data:`MAX_POINTS` points and one :meth:`SamPredictor.predict_boxes` call at most
:data:`MAX_BOXES` boxes; more are refused before any conversion or decoding, so a hostile caller
cannot make one request run for minutes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .cache import array_digest
from .disk_cache import EmbeddingDiskCache
from .engine import Features, SamEngine, as_engine
from .errors import PromptError
from .image_io import load_image
from .modeling import Sam
from .modeling.sam2 import Sam2

logger = logging.getLogger(__name__)

LOW_RES = 256

#: Most points one prompt may hold. SAM is trained with a handful of clicks per object, and the
#: decoder's cost grows with every point (10^4 points: seconds and GBs per request).
MAX_POINTS = 64
#: Most boxes one :meth:`SamPredictor.predict_boxes` call decodes, the same batch size
#: segment-everything uses on a GPU: each box costs a full-size float32 logit map while upscaling
#: (48 MB for a 12-megapixel photo), so larger sets are passed in batches of this size.
MAX_BOXES = 64


@dataclass(frozen=True)
class ImageEmbedding:
    """What the encoder produced for one image.

    ``features``: ``(1, 256, 64, 64)`` on the model's device (SAM 2: its three feature maps,
    :data:`sam.modeling.sam2.Sam2Features`); ``original_size`` and ``input_size`` are
    ``(height, width)`` before and after resizing to the 1024 input.
    """

    features: Features
    original_size: tuple[int, int]
    input_size: tuple[int, int]


class SamPredictor:
    """Interactive prediction on one image at a time.

    Embeddings live in the model's byte-bounded cache, keyed by image content, so predictors are
    cheap to create (one per request or per user) and an image seen before is not re-encoded.
    """

    def __init__(
        self, model: SamEngine | Sam | Sam2, disk_cache: EmbeddingDiskCache | None = None
    ) -> None:
        #: the engine from :func:`sam.load_model`, shared with every predictor of that model
        self.engine = as_engine(model)
        self.disk_cache = disk_cache
        self._embedding: ImageEmbedding | None = None
        self.image_key: str | None = None
        #: whether the last :meth:`set_image` was served from the in-memory cache
        self.cache_hit = False
        #: where the last embedding came from: "memory", "disk" or "encoder"
        self.embedding_source = ""

    # -- image ----------------------------------------------------------------------------------

    def set_image(self, image: Any, digest: str | None = None) -> None:
        """Encode ``image`` (``(H, W, 3) uint8`` RGB array, PIL image or path) unless cached.

        ``digest``: ``sam.cache.array_digest(image)`` when the caller already holds it, to skip
        hashing the pixels again (an 1800x1200 photo: 5-10 ms, paid on every click by a front
        end that makes a predictor per request). It must be the digest of this very image:
        another one would serve that image's embedding.
        """
        array = load_image(image, max_pixels=None, copy=False)  # only read here
        key = f"{digest or array_digest(array)}:{self.engine.dtype}"
        self._embedding, self.cache_hit = self.engine.embedding_cache.get_or_compute(
            key, lambda: self._load_or_encode(key, array)
        )
        if self.cache_hit:
            self.embedding_source = "memory"
        self.image_key = key

    def _load_or_encode(self, key: str, image: np.ndarray) -> ImageEmbedding:
        size = (image.shape[0], image.shape[1])
        if self.disk_cache is not None:
            stored = self.disk_cache.load(key, self.engine.device)
            if stored is not None and stored[1].get("original_size") == _size_text(size):
                features, meta = stored
                self.embedding_source = "disk"
                input_size = tuple(int(v) for v in meta["input_size"].split("x"))
                return ImageEmbedding(features, size, input_size)  # type: ignore[arg-type]
        embedding = self._encode(image)
        self.embedding_source = "encoder"
        if self.disk_cache is not None:
            meta = {
                "original_size": _size_text(size),
                "input_size": _size_text(embedding.input_size),
            }
            self.disk_cache.save(key, embedding.features, meta)
        return embedding

    def _encode(self, image: np.ndarray) -> ImageEmbedding:
        pixels, input_size = self.engine.prepare_pixels(image)
        start = time.perf_counter()
        with self.engine.encoder_lock, torch.inference_mode():
            features = self.engine.encode_image(pixels)
        logger.info(
            "Encoded %dx%d image in %.2f s on %s",
            image.shape[1],
            image.shape[0],
            time.perf_counter() - start,
            self.engine.device,
        )
        return ImageEmbedding(features, (image.shape[0], image.shape[1]), input_size)

    @property
    def model(self) -> torch.nn.Module:
        """The network (:class:`sam.modeling.Sam`), as ``predictor.model`` is in Meta's API."""
        return self.engine.model

    @property
    def is_image_set(self) -> bool:
        return self._embedding is not None

    @property
    def original_size(self) -> tuple[int, int]:
        """``(H, W)`` of the current image."""
        return self._require_image().original_size

    def get_image_embedding(self) -> Features:
        """``(1, 256, 64, 64)`` embedding of the current image (SAM 2: its three feature maps,
        the 64x64 embedding last)."""
        return self._require_image().features

    def reset_image(self) -> None:
        self._embedding = None
        self.image_key = None

    def _require_image(self) -> ImageEmbedding:
        if self._embedding is None:
            raise PromptError("No image is set: call set_image(image) before predicting.")
        return self._embedding

    # -- prompts --------------------------------------------------------------------------------

    def predict(
        self,
        point_coords: Any = None,
        point_labels: Any = None,
        box: Any = None,
        mask_input: Any = None,
        multimask_output: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for one prompt (any mix of points, a box and a previous mask).

        Args:
            point_coords: ``(N, 2)`` (x, y) in original-image pixels.
            point_labels: ``(N,)`` 1 = foreground, 0 = background.
            box: ``(4,)`` ``[x0, y0, x1, y1]`` in original-image pixels.
            mask_input: ``(1, 256, 256)`` low-res logits of a previous prediction.
            multimask_output: three candidates (best for one ambiguous click) or one.

        Returns:
            masks ``(K, H, W) bool``, scores ``(K,) float32`` (predicted IoU) and low-res logits
            ``(K, 256, 256) float32``, sorted by score, best first; K is 3 or 1.
        """
        emb = self._require_image()
        check_point_count(point_coords)
        check_point_count(point_labels, "point labels")
        points, labels = _check_points(point_coords, point_labels, emb.original_size)
        boxes = None if box is None else _check_box(box, emb.original_size)[None]
        mask = None if mask_input is None else _check_mask_input(mask_input)[None]
        if points is None and boxes is None and mask is None:
            raise PromptError(
                "No prompt given: pass point_coords with point_labels, a box, or mask_input."
            )
        masks, scores, logits = self._decode(
            None if points is None else points[None],
            None if labels is None else labels[None],
            boxes,
            mask,
            multimask_output,
        )
        return masks[0], scores[0], logits[0]

    def predict_boxes(
        self, boxes: Any, multimask_output: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for many boxes at once (one decoder batch).

        Args:
            boxes: ``(N, 4)`` ``[x0, y0, x1, y1]`` in original-image pixels, ``N <=``
                :data:`MAX_BOXES` (pass larger sets in batches).

        Returns:
            masks ``(N, K, H, W) bool``, scores ``(N, K) float32``, logits
            ``(N, K, 256, 256) float32``; each box's candidates sorted best first.
        """
        emb = self._require_image()
        _check_count(boxes, "boxes", MAX_BOXES, _TOO_MANY_BOXES)
        arr = _as_float_array(boxes, "boxes")
        if arr.ndim != 2 or arr.shape[1] != 4 or arr.shape[0] == 0:
            raise PromptError(f"boxes must have shape (N, 4) with N >= 1, got {arr.shape}.")
        checked = np.stack([_check_box(b, emb.original_size) for b in arr])
        return self._decode(None, None, checked, None, multimask_output)

    def decode_low_res(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode a batch of B already-validated prompts without upscaling (for batch pipelines).

        Args:
            points: ``(B, N, 2)`` (x, y) in original pixels; labels ``(B, N)``; boxes ``(B, 4)``;
                mask_input ``(B, 1, 256, 256)``.

        Returns:
            low-res logits ``(B, K, 256, 256) float32`` and predicted IoU ``(B, K) float32``, in
            the decoder's candidate order (not sorted).
        """
        emb = self._require_image()
        to_input = self.engine.to_input_frame
        pts = None if points is None else to_input(points, emb.original_size)
        bxs = None
        if boxes is not None:
            corners = np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 2)
            bxs = to_input(corners, emb.original_size).reshape(np.shape(boxes))
        as_tensor = self._tensor
        with torch.inference_mode():
            return self.engine.decode(
                emb.features,
                as_tensor(pts),
                None if labels is None else torch.as_tensor(labels, dtype=torch.int64),
                as_tensor(bxs),
                as_tensor(mask_input),
                multimask_output,
            )

    def upscale(self, low_res: torch.Tensor) -> torch.Tensor:
        """Low-res logits ``(B, K, 256, 256)`` -> logits at the image size ``(B, K, H, W)``."""
        emb = self._require_image()
        with torch.inference_mode():
            return self.engine.upscale(low_res, emb.input_size, emb.original_size)

    def _decode(
        self,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        boxes: np.ndarray | None,
        mask: np.ndarray | None,
        multimask_output: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        low_res, iou = self.decode_low_res(points, labels, boxes, mask, multimask_output)
        with torch.inference_mode():
            order = torch.argsort(iou, dim=1, descending=True, stable=True)
            iou = torch.gather(iou, 1, order)
            low_res = torch.gather(low_res, 1, order[..., None, None].expand_as(low_res))
            masks = self.upscale(low_res) > 0
        return masks.cpu().numpy(), iou.cpu().numpy(), low_res.cpu().numpy()

    @staticmethod
    def _tensor(array: np.ndarray | None) -> torch.Tensor | None:
        return None if array is None else torch.as_tensor(array, dtype=torch.float32)


# -- validation ----------------------------------------------------------------------------------


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


_TOO_MANY_POINTS = (
    "{count} {name} is more than the limit of {limit} per prompt. SAM needs only a few clicks "
    "per object: remove points, or segment the objects one at a time."
)
_TOO_MANY_BOXES = (
    "{count} {name} is more than the limit of {limit} per predict_boxes call: pass them in "
    "batches of at most {limit}."
)


def check_point_count(points: Any, name: str = "points") -> None:
    """Raise :class:`PromptError` when ``points`` (any sized sequence) has more than
    :data:`MAX_POINTS` items; front ends call it before loading or encoding anything."""
    _check_count(points, name, MAX_POINTS, _TOO_MANY_POINTS)


def _check_count(value: Any, name: str, limit: int, message: str) -> None:
    """Refuse more than ``limit`` items in ``value`` before it is converted or decoded.

    Only the leading length is read (``len``), so a list of 10^6 points is refused at once.
    Values without a length (scalars, strings) are left to the shape checks that follow.
    """
    if value is None or isinstance(value, str | bytes):
        return
    try:
        count = len(value)
    except TypeError:  # a scalar or 0-d array: the shape checks explain it
        return
    if count > limit:
        raise PromptError(message.format(count=count, name=name, limit=limit))


def _as_float_array(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{name} must be numeric, got {value!r}.") from exc
    if not np.all(np.isfinite(arr)):
        raise PromptError(f"{name} contains NaN or infinite values: {arr.tolist()}.")
    return arr


def _check_points(
    coords: Any, labels: Any, size: tuple[int, int]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    if coords is None and labels is None:
        return None, None
    if coords is None or labels is None:
        raise PromptError("point_coords and point_labels must be given together.")
    pts = _as_float_array(coords, "point_coords")
    if pts.ndim == 1 and pts.shape == (2,):
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
        raise PromptError(f"point_coords must have shape (N, 2) with N >= 1, got {pts.shape}.")
    labs = np.asarray(labels).reshape(-1)
    if labs.shape[0] != pts.shape[0]:
        raise PromptError(
            f"point_labels has {labs.shape[0]} labels for {pts.shape[0]} points; give one each."
        )
    if not np.all(np.isin(labs, (0, 1))):
        raise PromptError(
            f"point_labels must be 1 (foreground) or 0 (background), got {labs.tolist()}."
        )
    height, width = size
    outside = (pts[:, 0] < 0) | (pts[:, 0] > width) | (pts[:, 1] < 0) | (pts[:, 1] > height)
    if outside.any():
        x, y = pts[np.argmax(outside)]
        raise PromptError(
            f"Point ({x:g}, {y:g}) lies outside the {width}×{height} image; click inside it."
        )
    return pts, labs.astype(np.int64)


def _check_box(box: Any, size: tuple[int, int]) -> np.ndarray:
    arr = _as_float_array(box, "box").reshape(-1)
    if arr.shape != (4,):
        raise PromptError(f"box must be [x0, y0, x1, y1], got {arr.size} numbers.")
    x0, y0, x1, y1 = arr
    if x1 <= x0 or y1 <= y0:
        raise PromptError(
            f"box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] is empty or inverted: need x1 > x0 and y1 > y0."
        )
    height, width = size
    clipped = np.array([max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)])
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise PromptError(
            f"box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] lies outside the {width}×{height} image."
        )
    return clipped


def _check_mask_input(mask: Any) -> np.ndarray:
    arr = _as_float_array(mask, "mask_input").astype(np.float32)
    if arr.shape[-2:] != (LOW_RES, LOW_RES) or arr.size != LOW_RES * LOW_RES:
        raise PromptError(
            f"mask_input must be one (1, {LOW_RES}, {LOW_RES}) logits array from a previous "
            f"prediction, got shape {arr.shape}."
        )
    return arr.reshape(1, LOW_RES, LOW_RES)
