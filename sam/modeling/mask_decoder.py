"""Mask decoder: the two-way transformer (:mod:`.transformer`) lets prompt tokens and image
embedding attend to each other, then hypernetwork heads turn mask tokens into low-resolution
masks and an IoU head scores them.

Names mirror the HF checkpoint keys under ``mask_decoder.``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import FeedForward, LayerNorm2d, linear
from .config import MaskDecoderConfig
from .transformer import TwoWayTransformer


@dataclass(frozen=True)
class DecoderImage:
    """The prompt-independent part of decoding one image, computed once per image.

    ``keys``: ``(1 or B, h*w, C)`` image embedding plus dense prompt embedding, channels-last
    and contiguous; ``first_key_value``: the first layer's token-to-image key/value
    projections of them (None where not precomputed); ``size``: ``(h, w)``.
    """

    keys: torch.Tensor
    first_key_value: tuple[torch.Tensor, torch.Tensor] | None
    size: tuple[int, int]


class MaskDecoder(nn.Module):
    def __init__(self, config: MaskDecoderConfig) -> None:
        super().__init__()
        dim = config.hidden_size
        self.num_mask_tokens = config.num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.transformer = TwoWayTransformer(config)
        self.upscale_conv1 = nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2)
        self.upscale_layer_norm = LayerNorm2d(dim // 4, eps=config.layer_norm_eps)
        self.upscale_conv2 = nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2)
        self.output_hypernetworks_mlps = nn.ModuleList(
            FeedForward(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = FeedForward(
            dim, config.iou_head_hidden_dim, self.num_mask_tokens, config.iou_head_depth
        )

    def prepare(
        self,
        image_embeddings: torch.Tensor,
        dense: torch.Tensor,
        key_pe: torch.Tensor,
        precompute_first_layer: bool = True,
    ) -> DecoderImage:
        """The prompt-independent work for ``image_embeddings`` ``(1 or B, C, h, w)`` plus the
        dense prompt embedding ``dense`` (broadcastable to it); ``key_pe`` ``(1, h*w, C)``."""
        height, width = image_embeddings.shape[-2:]
        image = image_embeddings + dense
        keys = image.flatten(2).transpose(1, 2).contiguous()
        first = None
        if precompute_first_layer:
            attn = self.transformer.layers[0].cross_attn_token_to_image
            first = attn.project_key_value(keys + key_pe, keys)
        return DecoderImage(keys, first, (int(height), int(width)))

    def forward(
        self,
        image: DecoderImage,
        key_pe: torch.Tensor,
        sparse: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode a batch of B prompts on one image.

        Args:
            image: from :meth:`prepare`.
            key_pe: ``(1, h*w, C)`` dense positional encoding as tokens.
            sparse: ``(B, T, C)`` point/box tokens.

        Returns:
            masks ``(B, K, 4h, 4w)`` low-res logits and iou ``(B, K)``, K = 3 or 1.
        """
        batch = sparse.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.expand(batch, -1, -1), sparse.to(output_tokens)], dim=1)
        queries, keys = self.transformer(tokens, image.keys, key_pe, image.first_key_value)

        selected = range(1, self.num_mask_tokens) if multimask_output else range(1)
        hyper_in = torch.stack(
            [self.output_hypernetworks_mlps[i](queries[:, 1 + i]) for i in selected],
            dim=1,
        )
        masks = self._masks(keys, hyper_in, image.size)
        iou = self.iou_prediction_head(queries[:, 0])
        return masks, iou[:, selected.start : selected.stop]

    def _masks(
        self, keys: torch.Tensor, hyper_in: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """Upscale the image keys 4x and take their product with each mask token's
        hypernetwork output: ``(B, h*w, C)``, ``(B, K, C/8)`` -> ``(B, K, 4h, 4w)``.

        Each 2x2 stride-2 transposed convolution is a matmul whose output holds every input
        pixel's 2x2 block side by side. LayerNorm and GELU act per pixel and the final
        product per pixel too, so the blocks stay in that order until the end, where only
        the K-channel masks are rearranged (pixel shuffle) instead of the 64- and
        32-channel feature maps.
        """
        batch = keys.shape[0]
        height, width = size
        conv1, conv2, norm = (
            self.upscale_conv1,
            self.upscale_conv2,
            self.upscale_layer_norm,
        )
        x = _transposed_conv_2x2(keys.reshape(-1, keys.shape[-1]), conv1)  # rows (b,i,j,di,dj)
        # SAM's upscaling activation is the exact GELU, whatever the config's hidden_act; the
        # second one rides in the transposed convolution's matmul.
        x = F.gelu(F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps))
        x = _transposed_conv_2x2(x, conv2, gelu=True)  # rows (b, i, j, di, dj, ei, ej)
        channels = x.shape[-1]
        masks = hyper_in @ x.view(batch, -1, channels).transpose(1, 2)  # (B, K, h*w*16)
        k = hyper_in.shape[1]
        masks = masks.view(batch, k, height, width, 2, 2, 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7)
        return masks.reshape(batch, k, 4 * height, 4 * width)


def _transposed_conv_2x2(
    x: torch.Tensor, conv: nn.ConvTranspose2d, gelu: bool = False
) -> torch.Tensor:
    """A 2x2 stride-2 ``ConvTranspose2d`` on pixels as rows: ``(N, Cin)`` -> ``(4N, Cout)``,
    each input pixel's outputs for (di, dj) = (0, 0), (0, 1), (1, 0), (1, 1) in turn:
    ``out[2i+di, 2j+dj] = x[i, j] @ W[:, :, di, dj] + b``; then the exact GELU when ``gelu``."""
    cin, cout = conv.weight.shape[:2]
    weight = conv.weight.permute(2, 3, 1, 0).reshape(4 * cout, cin)  # rows (di, dj, cout)
    bias = conv.bias.repeat(4) if conv.bias is not None else None
    return linear(x, weight, bias, gelu=gelu).view(-1, cout)
