"""SAM 2's mask decoder: SAM's two-way transformer (its code, with SAM 2's parameter names and
ReLU MLP), an object-score token beside the IoU token, the high-resolution skip features added
while upscaling, a sigmoid IoU head and ``dynamic_multimask_via_stability`` for single-mask
output. Names mirror the HF checkpoint keys under ``mask_decoder.``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..common import FeedForward, LayerNorm2d
from ..mask_decoder import DecoderImage, MaskDecoder, _transposed_conv_2x2
from ..transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer
from .config import Sam2MaskDecoderConfig

#: The two high-resolution maps in the upscaling's 2x2-block order (:func:`high_res_blocks`):
#: ``(1 or B, h, w, 2, 2, 2, 2, C/8)`` and ``(1 or B, h, w, 2, 2, C/4)``, contiguous.
HighResBlocks = tuple[torch.Tensor, torch.Tensor]


def high_res_blocks(
    feat_s0: torch.Tensor, feat_s1: torch.Tensor, size: tuple[int, int]
) -> HighResBlocks:
    """``conv_s0``/``conv_s1`` maps ``(1 or B, C/8, 4h, 4w)`` and ``(1 or B, C/4, 2h, 2w)`` ->
    :data:`HighResBlocks`: map pixel ``(2i + di, 2j + dj)`` of the 2h x 2w map at
    ``[:, i, j, di, dj]``, pixel ``(4i + 2di + ei, 4j + 2dj + ej)`` of the 4h x 4w one at
    ``[:, i, j, di, dj, ei, ej]``, the order in which :meth:`Sam2MaskDecoder._masks` upscales.
    A copy per image, so that each click adds them in one contiguous pass."""
    height, width = size
    c0, c1 = feat_s0.shape[1], feat_s1.shape[1]
    s0 = feat_s0.view(-1, c0, height, 2, 2, width, 2, 2).permute(0, 2, 5, 3, 6, 4, 7, 1)
    s1 = feat_s1.view(-1, c1, height, 2, width, 2).permute(0, 2, 4, 3, 5, 1)
    return s0.contiguous(), s1.contiguous()


@dataclass(frozen=True)
class Sam2DecoderImage(DecoderImage):
    """:class:`DecoderImage` plus the image's :data:`HighResBlocks` (computed once per image
    with the rest of the prompt-independent work: 12 MiB for Hiera at fp32)."""

    high_res: HighResBlocks | None = None


class Sam2Attention(Attention):
    """SAM's attention (and its fast paths) with the output projection named ``o_proj``."""

    def __init__(self, config: Sam2MaskDecoderConfig, downsample_rate: int = 1) -> None:
        super().__init__(config, downsample_rate)  # type: ignore[arg-type]  # same fields
        self.o_proj = self._modules.pop("out_proj")

    @property
    def out_proj(self) -> nn.Linear:  # type: ignore[override]
        return self.o_proj


class Sam2TwoWayAttentionBlock(TwoWayAttentionBlock):
    """SAM's two-way block (same forward); the MLP is ReLU ``proj_in``/``proj_out``."""

    def __init__(self, config: Sam2MaskDecoderConfig, skip_first_layer_pe: bool) -> None:
        nn.Module.__init__(self)
        dim, eps, rate = config.hidden_size, config.layer_norm_eps, config.attention_downsample_rate
        self.self_attn = Sam2Attention(config, downsample_rate=1)
        self.layer_norm1 = nn.LayerNorm(dim, eps=eps)
        self.cross_attn_token_to_image = Sam2Attention(config, downsample_rate=rate)
        self.layer_norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = FeedForward(dim, config.mlp_dim, dim, num_layers=2)
        self.layer_norm3 = nn.LayerNorm(dim, eps=eps)
        self.layer_norm4 = nn.LayerNorm(dim, eps=eps)
        self.cross_attn_image_to_token = Sam2Attention(config, downsample_rate=rate)
        self.skip_first_layer_pe = skip_first_layer_pe


class Sam2TwoWayTransformer(TwoWayTransformer):
    def __init__(self, config: Sam2MaskDecoderConfig) -> None:
        nn.Module.__init__(self)
        self.layers = nn.ModuleList(
            Sam2TwoWayAttentionBlock(config, skip_first_layer_pe=(i == 0))
            for i in range(config.num_hidden_layers)
        )
        self.final_attn_token_to_image = Sam2Attention(config, config.attention_downsample_rate)
        self.layer_norm_final_attn = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class Sam2MaskDecoder(MaskDecoder):
    """Inherits :meth:`MaskDecoder.prepare` (the per-image work); the rest is SAM 2's."""

    def __init__(self, config: Sam2MaskDecoderConfig) -> None:
        nn.Module.__init__(self)
        self.config = config
        dim = config.hidden_size
        self.num_mask_tokens = config.num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.obj_score_token = nn.Embedding(1, dim)
        self.transformer = Sam2TwoWayTransformer(config)
        self.upscale_conv1 = nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2)
        self.upscale_conv2 = nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2)
        # SAM 2 keeps this norm at eps 1e-6 (HF's LayerNorm2d default, Meta's too).
        self.upscale_layer_norm = LayerNorm2d(dim // 4, eps=1e-6)
        self.output_hypernetworks_mlps = nn.ModuleList(
            FeedForward(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = FeedForward(
            dim, config.iou_head_hidden_dim, self.num_mask_tokens, config.iou_head_depth
        )
        self.conv_s0 = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(dim, dim // 4, kernel_size=1)
        self.pred_obj_score_head = FeedForward(dim, dim, 1, 3)

    def forward(  # type: ignore[override]
        self,
        image: DecoderImage,
        key_pe: torch.Tensor,
        sparse: torch.Tensor,
        multimask_output: bool,
        high_res: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode B prompts on one image.

        Args:
            image: from :meth:`prepare`; key_pe ``(1, h*w, C)``; sparse ``(B, T, C)``.
            high_res: ``conv_s0``/``conv_s1`` of the two high-resolution FPN maps,
                ``(1 or B, C/8, 4h, 4w)`` and ``(1 or B, C/4, 2h, 2w)`` (not read when
                ``image`` is a :class:`Sam2DecoderImage` holding them in block order).

        Returns:
            masks ``(B, K, 4h, 4w)`` low-res logits, IoU ``(B, K)`` in [0, 1] (K = 3 or 1)
            and the object-score logit ``(B, 1)``.
        """
        masks, iou, object_score = self.all_tokens(image, key_pe, sparse, high_res)
        if multimask_output:
            return masks[:, 1:], iou[:, 1:], object_score
        if self.config.dynamic_multimask_via_stability and not self.training:
            masks, iou = self.dynamic_multimask(masks, iou)
            return masks, iou, object_score
        return masks[:, :1], iou[:, :1], object_score

    def all_tokens(
        self,
        image: DecoderImage,
        key_pe: torch.Tensor,
        sparse: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As :meth:`forward`, for all four mask tokens (0: single mask, 1-3: candidates):
        masks ``(B, 4, 4h, 4w)``, IoU ``(B, 4)``, object score ``(B, 1)``."""
        batch = sparse.shape[0]
        output_tokens = torch.cat(
            [self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight]
        )
        tokens = torch.cat([output_tokens.expand(batch, -1, -1), sparse.to(output_tokens)], dim=1)
        queries, keys = self.transformer(tokens, image.keys, key_pe, image.first_key_value)

        hyper_in = torch.stack(
            [mlp(queries[:, 2 + i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )
        blocks = image.high_res if isinstance(image, Sam2DecoderImage) else None
        if blocks is None:
            blocks = high_res_blocks(*high_res, image.size)
        masks = self._masks(keys, hyper_in, image.size, blocks)
        iou = torch.sigmoid(self.iou_prediction_head(queries[:, 1]))
        return masks, iou, self.pred_obj_score_head(queries[:, 0])

    def _masks(  # type: ignore[override]
        self,
        keys: torch.Tensor,
        hyper_in: torch.Tensor,
        size: tuple[int, int],
        high_res: HighResBlocks,
    ) -> torch.Tensor:
        """SAM's :meth:`MaskDecoder._masks` (the transposed convolutions as matmuls on pixel
        rows kept in 2x2-block order, the masks shuffled back at the end), with the
        high-resolution maps (:data:`HighResBlocks`, already in that order) added before the
        LayerNorm and the second GELU: ``(B, h*w, C)``, ``(B, K, C/8)`` -> ``(B, K, 4h, 4w)``."""
        batch = keys.shape[0]
        height, width = size
        s0, s1 = high_res
        c0, c1 = s0.shape[-1], s1.shape[-1]
        # Without gradients the sums go into the matmuls' fresh outputs.
        inplace = not torch.is_grad_enabled()
        norm = self.upscale_layer_norm
        x = _transposed_conv_2x2(keys.reshape(-1, keys.shape[-1]), self.upscale_conv1)
        # rows (b, i, j, di, dj): map pixel (2i + di, 2j + dj)
        x = x.view(batch, height, width, 2, 2, c1)
        x = x.add_(s1.to(x.dtype)) if inplace else x + s1.to(x.dtype)
        x = F.gelu(F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps))
        x = _transposed_conv_2x2(x.view(-1, c1), self.upscale_conv2)
        # rows (b, i, j, di, dj, ei, ej): map pixel (4i + 2di + ei, 4j + 2dj + ej)
        x = x.view(batch, height, width, 2, 2, 2, 2, c0)
        x = torch.ops.aten.gelu_(x.add_(s0.to(x.dtype))) if inplace else F.gelu(x + s0.to(x.dtype))
        masks = hyper_in @ x.view(batch, -1, c0).transpose(1, 2)  # (B, K, h*w*16)
        k = hyper_in.shape[1]
        masks = masks.view(batch, k, height, width, 2, 2, 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7)
        return masks.reshape(batch, k, 4 * height, 4 * width)

    def dynamic_multimask(
        self, masks: torch.Tensor, iou: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The single-mask token's output where it is stable (the share of its pixels above
        +delta among those above -delta is at least the threshold), else the multimask
        candidate with the highest predicted IoU: ``(B, 4, H, W)``, ``(B, 4)`` -> K = 1."""
        best = iou[:, 1:].argmax(dim=1) + 1  # (B,)
        rows = torch.arange(masks.shape[0], device=masks.device)
        best_masks, best_iou = masks[rows, best][:, None], iou[rows, best][:, None]
        single = masks[:, :1].flatten(2)
        delta = self.config.dynamic_multimask_stability_delta
        inner = (single > delta).sum(dim=-1).float()
        outer = (single > -delta).sum(dim=-1).float()
        stability = torch.where(outer > 0, inner / outer, 1.0)  # (B, 1)
        stable = stability >= self.config.dynamic_multimask_stability_thresh
        masks = torch.where(stable[..., None, None], masks[:, :1], best_masks)
        return masks, torch.where(stable, iou[:, :1], best_iou)
