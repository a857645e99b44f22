"""Two-way transformer and mask decoder: prompt tokens and image embedding attend to each other,
then hypernetwork heads turn mask tokens into low-resolution masks and an IoU head scores them.

Names mirror the HF checkpoint keys under ``mask_decoder.``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import MaskDecoderConfig
from .layers import FeedForward, LayerNorm2d, MLPBlock


class Attention(nn.Module):
    """Multi-head attention whose projections may shrink the width by ``downsample_rate``."""

    def __init__(self, config: MaskDecoderConfig, downsample_rate: int = 1) -> None:
        super().__init__()
        internal = config.hidden_size // downsample_rate
        if internal % config.num_attention_heads:
            raise ValueError(
                f"num_attention_heads={config.num_attention_heads} must divide {internal}"
            )
        self.num_attention_heads = config.num_attention_heads
        self.q_proj = nn.Linear(config.hidden_size, internal)
        self.k_proj = nn.Linear(config.hidden_size, internal)
        self.v_proj = nn.Linear(config.hidden_size, internal)
        self.out_proj = nn.Linear(internal, config.hidden_size)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        return x.reshape(batch, tokens, self.num_attention_heads, -1).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """``(B, Nq, C)``, ``(B, Nk, C)``, ``(B, Nk, C)`` -> ``(B, Nq, C)``."""
        q = self._heads(self.q_proj(query))
        k = self._heads(self.k_proj(key))
        v = self._heads(self.v_proj(value))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(query.shape[0], query.shape[1], -1)
        return self.out_proj(out)


class TwoWayAttentionBlock(nn.Module):
    def __init__(self, config: MaskDecoderConfig, skip_first_layer_pe: bool) -> None:
        super().__init__()
        dim, eps, rate = config.hidden_size, config.layer_norm_eps, config.attention_downsample_rate
        self.self_attn = Attention(config, downsample_rate=1)
        self.layer_norm1 = nn.LayerNorm(dim, eps=eps)
        self.cross_attn_token_to_image = Attention(config, downsample_rate=rate)
        self.layer_norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLPBlock(dim, config.mlp_dim, config.hidden_act)
        self.layer_norm3 = nn.LayerNorm(dim, eps=eps)
        self.layer_norm4 = nn.LayerNorm(dim, eps=eps)
        self.cross_attn_image_to_token = Attention(config, downsample_rate=rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """queries ``(B, T, C)`` tokens, keys ``(B, HW, C)`` image; PEs broadcast to them."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.layer_norm1(queries)

        keys_with_pe = keys + key_pe
        q = queries + query_pe
        queries = self.layer_norm2(queries + self.cross_attn_token_to_image(q, keys_with_pe, keys))
        queries = self.layer_norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.layer_norm4(keys + self.cross_attn_image_to_token(keys_with_pe, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, config: MaskDecoderConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(config, skip_first_layer_pe=(i == 0))
            for i in range(config.num_hidden_layers)
        )
        self.final_attn_token_to_image = Attention(config, config.attention_downsample_rate)
        # SAM uses PyTorch's default eps here, not the config's.
        self.layer_norm_final_attn = nn.LayerNorm(config.hidden_size)

    def forward(
        self, tokens: torch.Tensor, image: torch.Tensor, image_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens ``(B, T, C)``; image ``(B, C, h, w)``; image_pe ``(1, C, h, w)``.

        Returns updated tokens ``(B, T, C)`` and image keys ``(B, h*w, C)``.
        """
        keys = image.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        q = queries + tokens
        attn = self.final_attn_token_to_image(q, keys + key_pe, keys)
        return self.layer_norm_final_attn(queries + attn), keys


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
        self.activation = nn.GELU()
        self.output_hypernetworks_mlps = nn.ModuleList(
            FeedForward(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = FeedForward(
            dim, config.iou_head_hidden_dim, self.num_mask_tokens, config.iou_head_depth
        )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode a batch of B prompts on one image.

        Args:
            image_embeddings: ``(1, C, h, w)`` or ``(B, C, h, w)``.
            image_pe: ``(1, C, h, w)`` dense positional encoding.
            sparse: ``(B, T, C)`` point/box tokens; dense: ``(B, C, h, w)`` mask embedding.

        Returns:
            masks ``(B, K, 4h, 4w)`` low-res logits and iou ``(B, K)``, K = 3 or 1.
        """
        batch = sparse.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.expand(batch, -1, -1), sparse.to(output_tokens)], dim=1)
        image = image_embeddings + dense
        queries, keys = self.transformer(tokens, image, image_pe)

        _, channels, height, width = image.shape
        upscaled = keys.transpose(1, 2).reshape(batch, channels, height, width)
        upscaled = self.activation(self.upscale_layer_norm(self.upscale_conv1(upscaled)))
        upscaled = self.activation(self.upscale_conv2(upscaled))

        mask_tokens = queries[:, 1 : 1 + self.num_mask_tokens]
        hyper_in = torch.stack(
            [mlp(mask_tokens[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
        iou = self.iou_prediction_head(queries[:, 0])

        selected = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, selected], iou[:, selected]
