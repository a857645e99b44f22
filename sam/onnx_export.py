"""The prompt encoder and mask decoder as one ONNX graph with Meta's signature, for decoding
clicks in a browser (ONNX Runtime Web) or any ONNX runtime.

Inputs (as ``segment_anything/utils/onnx.py``'s ``SamOnnxModel``):

- ``image_embeddings`` ``(1, 256, 64, 64)`` float32, from the image encoder;
- ``point_coords`` ``(1, N, 2)`` float32 (x, y) in the 1024-pixel input frame
  (:func:`sam.transforms.scale_coords`); a box is two more points, its corners, with labels 2
  and 3; without a box one padding point ``(0, 0)`` with label -1 is appended;
- ``point_labels`` ``(1, N)`` float32: 1 object, 0 background, 2/3 box corners, -1 padding;
- ``mask_input`` ``(1, 1, 256, 256)`` float32 low-res logits of a previous prediction, used when
  ``has_mask_input`` ``(1,)`` float32 is 1;
- ``orig_im_size`` ``(2,)`` float32 ``(H, W)``: the size ``masks`` are upscaled to.

Outputs, for all four mask tokens (token 0: the single-mask answer; tokens 1-3: the three
candidates of an ambiguous click), unsorted: ``masks`` ``(1, 4, H, W)`` float32 logits,
``iou_predictions`` ``(1, 4)`` and ``low_res_masks`` ``(1, 4, 256, 256)``.

SAM 2 models export only the cut graph (``low_res_only=True``), as the page uses it: inputs
``image_embeddings`` ``(1, C, 64, 64)``, ``high_res_feats_0`` ``(1, C/8, 256, 256)`` and
``high_res_feats_1`` ``(1, C/4, 128, 128)`` (:meth:`sam.modeling.sam2.Sam2.encode_image`), then
``point_coords``, ``point_labels``, ``mask_input``, ``has_mask_input`` as above, with the
coordinates scaled per axis to the 1024x1024 input (:meth:`sam.engine.Sam2Engine.to_input_frame`)
and one padding point (label -1) always last, box or not: SAM 2's "not a point" token. Token 0
of the outputs is SAM 2's single-mask answer (``dynamic_multimask_via_stability``: the best
candidate where the single mask is unstable); ``low_res_masks`` cover the whole image.

Exporting needs the optional ``onnx`` package (``pip install '.[onnx]'``).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import SamError
from .modeling import Sam
from .modeling.sam2 import Sam2
from .transforms import scale_coords

logger = logging.getLogger(__name__)

#: ONNX opset of the exported graph: LayerNormalization needs 17; ONNX Runtime Web runs it.
OPSET = 17
INPUT_NAMES = (
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
)
OUTPUT_NAMES = ("masks", "iou_predictions", "low_res_masks")
#: SAM 2's inputs: its three feature maps, then SAM's prompt inputs (no ``orig_im_size``).
SAM2_INPUT_NAMES = (
    "image_embeddings",
    "high_res_feats_0",
    "high_res_feats_1",
    *[name for name in INPUT_NAMES[1:] if name != "orig_im_size"],
)
SAM2_OUTPUT_NAMES = ("iou_predictions", "low_res_masks")
#: Point labels of a box's corners and of the padding point in Meta's ONNX convention.
BOX_TOP_LEFT, BOX_BOTTOM_RIGHT, PADDING = 2, 3, -1


class OnnxExportError(SamError, RuntimeError):
    """The decoder could not be exported (a missing optional package, an unwritable folder)."""


class _PromptDecoderGraph(nn.Module):
    """What both families' graphs hold: fp32 CPU copies of the prompt encoder and mask decoder
    (the image encoder, maybe bf16, is not part of the graph; the decoder always runs at fp32)
    and the decoder's key positions."""

    def __init__(self, model: Sam | Sam2) -> None:
        super().__init__()
        self.pe = copy.deepcopy(model.shared_image_embedding).float().cpu()
        self.prompt_encoder = copy.deepcopy(model.prompt_encoder).float().cpu()
        self.mask_decoder = copy.deepcopy(model.mask_decoder).float().cpu()
        self.image_size = model.config.prompt_encoder_config.image_size
        with torch.no_grad():
            key_pe = model.key_pe().float().cpu()
        self.register_buffer("key_pe", key_pe, persistent=False)

    def _embed_mask(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        prompt = self.prompt_encoder
        no_mask = prompt.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return has_mask_input * prompt.mask_embed(mask_input) + (1 - has_mask_input) * no_mask


class SamOnnxDecoder(_PromptDecoderGraph):
    """Meta's ONNX decoder signature around :class:`sam.modeling.Sam` (see the module doc)."""

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        prompt = self.prompt_encoder
        embedding = self.pe((coords + 0.5) / self.image_size)
        labels = labels.unsqueeze(-1)
        embedding = embedding * (labels != PADDING)
        embedding = embedding + prompt.not_a_point_embed.weight * (labels == PADDING)
        for i, table in enumerate(prompt.point_embed):
            embedding = embedding + table.weight * (labels == i)
        return embedding

    def _upscale(self, low_res: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """As :func:`sam.transforms.upscale_logits`, with the sizes as graph values."""
        size = self.image_size
        masks = F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)
        scale = size / torch.max(orig_im_size)
        resized = torch.floor(orig_im_size * scale + 0.5).to(torch.int64)
        masks = masks[..., : resized[0], : resized[1]]
        height, width = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(height, width), mode="bilinear", align_corners=False)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_mask(mask_input, has_mask_input)
        decoder, key_pe = self.mask_decoder, self.key_pe
        image = decoder.prepare(image_embeddings, dense, key_pe, precompute_first_layer=False)
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.expand(sparse.shape[0], -1, -1), sparse], dim=1)
        queries, keys = decoder.transformer(tokens, image.keys, key_pe, None)
        hyper_in = torch.stack(
            [mlp(queries[:, 1 + i]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)],
            dim=1,
        )
        low_res = decoder._masks(keys, hyper_in, image.size)
        iou = decoder.iou_prediction_head(queries[:, 0])
        return self._upscale(low_res, orig_im_size), iou, low_res


class Sam2OnnxDecoder(_PromptDecoderGraph):
    """SAM 2's prompt encoder and mask decoder with the cut signature (see the module doc)."""

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """As :class:`sam.modeling.sam2.Sam2PromptEncoder`: box corners are points labelled
        2/3 and the "not a point" token a point labelled -1."""
        prompt = self.prompt_encoder
        labels = labels.unsqueeze(-1)
        embedding = self.pe((coords + 0.5) / self.image_size)
        embedding = torch.where(labels == PADDING, prompt.not_a_point_embed.weight, embedding)
        for i in range(prompt.point_embed.num_embeddings):
            embedding = embedding + prompt.point_embed.weight[i] * (labels == i)
        return embedding

    def forward(
        self,
        image_embeddings: torch.Tensor,
        high_res_feats_0: torch.Tensor,
        high_res_feats_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        decoder = self.mask_decoder
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_mask(mask_input, has_mask_input)
        image = decoder.prepare(image_embeddings, dense, self.key_pe, precompute_first_layer=False)
        masks, iou, _ = decoder.all_tokens(
            image, self.key_pe, sparse, (high_res_feats_0, high_res_feats_1)
        )
        if decoder.config.dynamic_multimask_via_stability:
            single, single_iou = decoder.dynamic_multimask(masks, iou)
            masks = torch.cat([single, masks[:, 1:]], dim=1)
            iou = torch.cat([single_iou, iou[:, 1:]], dim=1)
        return iou, masks


def example_inputs(model: Sam, num_points: int = 2) -> tuple[torch.Tensor, ...]:
    """Inputs of the right shapes and dtypes to trace the graph with."""
    channels = model.config.mask_decoder_config.hidden_size
    side = model.config.prompt_encoder_config.image_embedding_size
    low = 4 * side
    return (
        torch.randn(1, channels, side, side),
        torch.randint(0, 1024, (1, num_points, 2), dtype=torch.float32),
        torch.tensor([[1.0] * (num_points - 1) + [PADDING]]),
        torch.zeros(1, 1, low, low),
        torch.tensor([1.0]),
        torch.tensor([1200.0, 1800.0]),
    )


def sam2_example_inputs(model: Sam2, num_points: int = 2) -> tuple[torch.Tensor, ...]:
    """Inputs of the right shapes and dtypes to trace SAM 2's graph with."""
    channels = model.config.mask_decoder_config.hidden_size
    side = model.config.prompt_encoder_config.image_embedding_size
    low = 4 * side
    return (
        torch.randn(1, channels, side, side),
        torch.randn(1, channels // 8, 4 * side, 4 * side),
        torch.randn(1, channels // 4, 2 * side, 2 * side),
        torch.randint(0, 1024, (1, num_points, 2), dtype=torch.float32),
        torch.tensor([[1.0] * (num_points - 1) + [PADDING]]),
        torch.zeros(1, 1, low, low),
        torch.tensor([1.0]),
    )


def onnx_inputs(
    image_embeddings: np.ndarray,
    original_size: tuple[int, int],
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
    mask_input: np.ndarray | None = None,
    longest_edge: int = 1024,
) -> dict[str, np.ndarray]:
    """The graph's inputs for one prompt given in original-image pixels, as
    :meth:`sam.SamPredictor.predict` takes it: points ``(N, 2)`` with labels ``(N,)`` (1/0), a
    box ``(4,)``, mask_input ``(1, 256, 256)`` logits; masks come back at ``original_size``."""
    feeds = _prompt_inputs(
        lambda c: scale_coords(c, original_size, longest_edge),
        points, labels, box, mask_input, 4 * image_embeddings.shape[-1], pad_always=False,
    )  # fmt: skip
    return {
        "image_embeddings": np.asarray(image_embeddings, dtype=np.float32),
        **feeds,
        "orig_im_size": np.array(original_size, dtype=np.float32),
    }


def sam2_onnx_inputs(
    features: tuple[np.ndarray, np.ndarray, np.ndarray],
    original_size: tuple[int, int],
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
    mask_input: np.ndarray | None = None,
    input_size: int = 1024,
) -> dict[str, np.ndarray]:
    """SAM 2's graph inputs for one prompt in original-image pixels, as :func:`onnx_inputs`;
    ``features`` as :meth:`sam.modeling.sam2.Sam2.encode_image` returns them."""
    feat_s0, feat_s1, embedding = features
    height, width = original_size
    scale = np.array([input_size / width, input_size / height])
    feeds = _prompt_inputs(
        lambda c: c * scale, points, labels, box, mask_input, 4 * embedding.shape[-1],
        pad_always=True,
    )  # fmt: skip
    return {
        "image_embeddings": np.asarray(embedding, dtype=np.float32),
        "high_res_feats_0": np.asarray(feat_s0, dtype=np.float32),
        "high_res_feats_1": np.asarray(feat_s1, dtype=np.float32),
        **feeds,
    }


def _prompt_inputs(
    to_input: Callable[[np.ndarray], np.ndarray],
    points: np.ndarray | None,
    labels: np.ndarray | None,
    box: np.ndarray | None,
    mask_input: np.ndarray | None,
    low: int,
    pad_always: bool,
) -> dict[str, np.ndarray]:
    """``point_coords``/``point_labels`` (box corners labelled 2/3, a padding point last when
    there is no box or ``pad_always``), ``mask_input`` ``(1, 1, low, low)`` and
    ``has_mask_input``; ``to_input`` maps ``(N, 2)`` pixels to the input frame."""
    coords = [] if points is None else [np.asarray(points, dtype=np.float64).reshape(-1, 2)]
    kinds = [] if labels is None else [np.asarray(labels, dtype=np.float32).reshape(-1)]
    if box is not None:
        coords.append(np.asarray(box, dtype=np.float64).reshape(2, 2))
        kinds.append(np.array([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], dtype=np.float32))
    scaled = [to_input(c) for c in coords]
    if box is None or pad_always:
        scaled.append(np.zeros((1, 2)))
        kinds.append(np.array([PADDING], dtype=np.float32))
    has_mask = mask_input is not None
    return {
        "point_coords": np.concatenate(scaled).astype(np.float32)[None],
        "point_labels": np.concatenate(kinds)[None],
        "mask_input": (
            np.asarray(mask_input, dtype=np.float32).reshape(1, 1, low, low)
            if has_mask
            else np.zeros((1, 1, low, low), dtype=np.float32)
        ),
        "has_mask_input": np.array([1.0 if has_mask else 0.0], dtype=np.float32),
    }


def embedding_bytes(features: torch.Tensor | tuple[torch.Tensor, ...]) -> bytes:
    """An image embedding ``(1, C, h, w)`` as the bytes a browser loads: float16, little-endian,
    C order (half the size of float32; the decoder's masks barely change, see bench/README.md).
    SAM 2's three maps ``(feat_s0, feat_s1, embedding)`` go embedding first, then ``feat_s0``
    and ``feat_s1``, the order of the graph's inputs."""
    if isinstance(features, tuple):
        feat_s0, feat_s1, embedding = features
        return b"".join(embedding_bytes(f) for f in (embedding, feat_s0, feat_s1))
    array = features.detach().to(device="cpu", dtype=torch.float16).contiguous().numpy()
    return array.astype("<f2", copy=False).tobytes()


def embedding_dims(features: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[int, ...]:
    """The ``(C, h, w)`` of each map in :func:`embedding_bytes`, in its order, flattened."""
    if isinstance(features, tuple):
        feat_s0, feat_s1, embedding = features
        return tuple(d for f in (embedding, feat_s0, feat_s1) for d in embedding_dims(f))
    return tuple(int(d) for d in features.shape[1:])


def _require_onnx() -> None:
    if importlib.util.find_spec("onnx") is None:
        raise OnnxExportError(
            "Exporting the decoder to ONNX needs the onnx package: pip install '.[onnx]' "
            "(or pip install onnx)."
        )


def export_decoder(
    model: Sam | Sam2, path: str | Path, opset: int = OPSET, low_res_only: bool = False
) -> Path:
    """Write the prompt encoder + mask decoder of ``model`` to ``path`` as ONNX (fp32).

    ``low_res_only`` drops ``orig_im_size`` and ``masks`` (the graph is cut to
    ``iou_predictions`` and ``low_res_masks``): ONNX Runtime computes every node of a graph
    whatever outputs are asked for, and the upscaling to the full image is the larger part of
    a click's work in the browser, which upscales only the pixels it shows.

    A SAM 2 model exports only so cut (SAM 2's signature: see the module doc).

    The file is written next to ``path`` first and renamed, so a reader never sees half of it.
    Raises :class:`OnnxExportError` without the ``onnx`` package, when ``path`` is not
    writable, or for a SAM 2 model without ``low_res_only``.
    """
    if isinstance(model, Sam2):
        if not low_res_only:
            raise OnnxExportError(
                "SAM 2 decoders export only cut to the low-res masks (the signature the app's "
                "page uses), not with Meta's full-size SAM signature."
            )
        wrapper: nn.Module = Sam2OnnxDecoder(model).eval()
        inputs, outputs = SAM2_INPUT_NAMES, SAM2_OUTPUT_NAMES
        example = sam2_example_inputs(model)
    elif isinstance(model, Sam):
        wrapper = SamOnnxDecoder(model).eval()
        inputs, outputs = INPUT_NAMES, OUTPUT_NAMES
        example = example_inputs(model)
    else:
        raise OnnxExportError(f"Only SAM models export to ONNX here, not {type(model).__name__}.")
    _require_onnx()
    import onnx.utils

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # oneDNN's fused linear (sam.modeling.common.linear) is a private op ONNX does not
        # know: switched off while tracing.
        with torch.backends.mkldnn.flags(enabled=False), torch.no_grad():
            torch.onnx.export(
                wrapper,
                example,
                str(tmp),
                input_names=list(inputs),
                output_names=list(outputs),
                dynamic_axes={
                    "point_coords": {1: "num_points"},
                    "point_labels": {1: "num_points"},
                    **({"masks": {2: "height", 3: "width"}} if "masks" in outputs else {}),
                },
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        if low_res_only and "masks" in outputs:
            kept_in = [name for name in inputs if name != "orig_im_size"]
            kept_out = [name for name in outputs if name != "masks"]
            onnx.utils.extract_model(str(tmp), str(tmp), kept_in, kept_out)
        onnx.checker.check_model(str(tmp))
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OnnxExportError(f"Could not write the ONNX decoder to {path}: {exc}") from exc
    logger.info("Wrote the ONNX decoder to %s", path)
    return path
