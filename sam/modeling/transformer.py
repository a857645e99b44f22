"""Two-way transformer: prompt tokens and the image embedding attend to each other (SAM's
decoder body). Names mirror the HF checkpoint keys under ``mask_decoder.transformer.``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLPBlock
from .config import MaskDecoderConfig


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

    def project_key_value(
        self, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, Nk, C)`` keys and values -> per-head ``(B, heads, Nk, C/heads/rate)`` each."""
        return self._heads(self.k_proj(key)), self._heads(self.v_proj(value))

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None,
        value: torch.Tensor | None,
        key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``(B, Nq, C)``, ``(B, Nk, C)``, ``(B, Nk, C)`` -> ``(B, Nq, C)``.

        ``key_value``: the output of :meth:`project_key_value` computed earlier (batch 1 is
        broadcast to B), used instead of ``key`` and ``value``.
        """
        q = self._heads(self.q_proj(query))
        if key_value is None:
            assert key is not None and value is not None
            k, v = self.project_key_value(key, value)
        else:
            k, v = (t.expand(q.shape[0], -1, -1, -1) for t in key_value)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(query.shape[0], query.shape[1], -1)
        return self.out_proj(out)

    def attend_from_few(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`forward` for few queries and many keys (prompt tokens attending to image
        tokens), with the key and value projections folded into the queries.

        ``scores_h = q_h (x Wk_h + bk_h)ᵀ = (q_h Wk_hᵀ) xᵀ + q_h bk_h`` and, as each row of
        ``P_h`` sums to 1, ``P_h (x Wv_h + bv_h) = (P_h x) Wv_h + bv_h``: the image tokens
        enter two matmuls of width heads × Nq instead of two projections to the full width.
        """
        heads = self.num_attention_heads
        q = self._heads(self.q_proj(query))  # (B, heads, Nq, d)
        batch = max(q.shape[0], key.shape[0])
        q = q.expand(batch, -1, -1, -1)
        key, value = key.expand(batch, -1, -1), value.expand(batch, -1, -1)
        n_query, dim = q.shape[2], q.shape[3]
        channels = key.shape[-1]
        q = q * dim**-0.5
        w_k = self.k_proj.weight.view(heads, dim, channels)
        folded = torch.einsum("bhqd,hdc->bhqc", q, w_k).reshape(batch, heads * n_query, channels)
        bias = torch.einsum("bhqd,hd->bhq", q, self.k_proj.bias.view(heads, dim))
        scores = torch.baddbmm(bias.reshape(batch, -1, 1), folded, key.transpose(1, 2))
        mixed = (scores.softmax(dim=-1) @ value).view(batch, heads, n_query, channels)
        w_v = self.v_proj.weight.view(heads, dim, channels)
        out = torch.einsum("bhqc,hdc->bhqd", mixed, w_v) + self.v_proj.bias.view(heads, 1, dim)
        return self.out_proj(out.transpose(1, 2).reshape(batch, n_query, heads * dim))

    def attend_to_few(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`forward` for many queries and few keys (image tokens attending to prompt
        tokens), with the query and output projections folded into the keys and values.

        ``scores_h = (x Wq_h + bq_h) k_hᵀ = x (Wq_h k_hᵀ) + bq_h k_hᵀ`` and
        ``out = Σ_h P_h (v_h Wo_h) + bo``: two matmuls of width heads × Nk on the large side,
        instead of the query projection, attention and output projection over all queries.
        """
        heads = self.num_attention_heads
        k, v = self.project_key_value(key, value)  # (B, heads, Nk, d)
        batch = max(query.shape[0], k.shape[0])
        query = query.expand(batch, -1, -1)  # the image tokens of layer 0 may be shared
        k, v = k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)
        _, n_query, channels = query.shape
        n_key, dim = k.shape[2], k.shape[3]
        scale = dim**-0.5
        w_q = self.q_proj.weight.view(heads, dim, channels)
        scores_w = torch.einsum("hdc,bhjd->bhjc", w_q, k * scale).reshape(batch, -1, channels)
        b_q = self.q_proj.bias.view(heads, dim)
        scores_b = torch.einsum("hd,bhjd->bhj", b_q, k * scale).reshape(batch, -1, 1)
        # Scores as (B, heads * Nk, Nq): the softmax over the few keys then runs along a middle
        # axis, vectorised across the contiguous queries; over a last axis of 7 it is 20x slower.
        scores = torch.baddbmm(scores_b, scores_w, query.transpose(1, 2))
        probs = scores.view(batch, heads, n_key, n_query).softmax(dim=2)
        w_o = self.out_proj.weight.view(-1, heads, dim)  # (C, heads, d)
        values = torch.einsum("bhjd,chd->bhjc", v, w_o).reshape(batch, heads * n_key, -1)
        out = torch.baddbmm(
            self.out_proj.bias.expand(batch, 1, -1),
            probs.view(batch, -1, n_query).transpose(1, 2),
            values,
        )
        return out


class TwoWayAttentionBlock(nn.Module):
    def __init__(self, config: MaskDecoderConfig, skip_first_layer_pe: bool) -> None:
        super().__init__()
        dim, eps, rate = (
            config.hidden_size,
            config.layer_norm_eps,
            config.attention_downsample_rate,
        )
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
        image_key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """queries ``(B, T, C)`` tokens, keys ``(B, HW, C)`` image; PEs broadcast to them.

        ``image_key_value``: ``cross_attn_token_to_image.project_key_value(keys + key_pe,
        keys)`` when already known (it depends on the image only, not on the prompt).
        """
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.layer_norm1(queries)

        keys_with_pe = keys + key_pe
        q = queries + query_pe
        if image_key_value is None:
            attn = self.cross_attn_token_to_image.attend_from_few(q, keys_with_pe, keys)
        else:
            attn = self.cross_attn_token_to_image(q, None, None, key_value=image_key_value)
        queries = self.layer_norm2(queries + attn)
        queries = self.layer_norm3(queries + self.mlp(queries))

        q = queries + query_pe
        attn = self.cross_attn_image_to_token.attend_to_few(keys_with_pe, q, queries)
        keys = self.layer_norm4(keys + attn)
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
        self,
        tokens: torch.Tensor,
        keys: torch.Tensor,
        key_pe: torch.Tensor,
        first_key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens ``(B, T, C)``; keys ``(1 or B, h*w, C)`` the image (embedding + dense prompt
        embedding) as contiguous tokens; key_pe ``(1, h*w, C)``.

        Returns updated tokens ``(B, T, C)`` and image keys ``(B, h*w, C)``.
        """
        queries = tokens
        for i, layer in enumerate(self.layers):
            queries, keys = layer(
                queries, keys, tokens, key_pe, first_key_value if i == 0 else None
            )
        q = queries + tokens
        attn = self.final_attn_token_to_image.attend_from_few(q, keys + key_pe, keys)
        return self.layer_norm_final_attn(queries + attn), keys
