"""ViT image encoder: patch embedding, windowed and global attention with decomposed relative
position bias, and the convolutional neck.

Module and parameter names mirror the Hugging Face checkpoint keys under ``vision_encoder.``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .config import VisionConfig
from .layers import LayerNorm2d, MLPBlock

# Upper bound on the bytes of one chunk of the attention bias. Global attention over a 64x64
# grid would otherwise build a (heads, 4096, 4096) fp32 bias: 805 MB for ViT-B. Smaller chunks
# stay in cache between writing the bias and reading it in the attention kernel (one thread,
# ViT-B global layer: 12.6 MB chunks 1.08 s, 25 MB 0.94 s, 50 MB 0.91 s, 100 MB 0.97 s).
_BIAS_CHUNK_BYTES = 32 * 2**20
# The same for the scores of one chunk on the CPU bf16/fp16 path (built from matmuls).
_SCORES_CHUNK_BYTES = 16 * 2**20


class PatchEmbeddings(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.projection = nn.Conv2d(
            config.num_channels,
            config.hidden_size,
            kernel_size=config.patch_size,
            stride=config.patch_size,
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, S/p, S/p, hidden)``."""
        return self.projection(pixel_values).permute(0, 2, 3, 1)


def relative_position_table(size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Table of embeddings for every (query, key) offset along one axis.

    Args:
        size: number of positions along the axis (query and key sizes are equal here).
        rel_pos: ``(L, head_dim)`` learned embeddings; resized linearly when ``L != 2*size-1``.

    Returns:
        ``(size, size, head_dim)`` where entry ``[i, j]`` embeds the offset ``i - j``.
    """
    length = 2 * size - 1
    if rel_pos.shape[0] != length:
        rel_pos = F.interpolate(rel_pos.T.unsqueeze(0).float(), size=length, mode="linear")[0].T.to(
            rel_pos.dtype
        )
    idx = torch.arange(size, device=rel_pos.device)
    offsets = idx[:, None] - idx[None, :] + (size - 1)
    return rel_pos[offsets]


def attention_with_rel_pos(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    table_h: torch.Tensor,
    table_w: torch.Tensor,
    height: int,
    width: int,
) -> torch.Tensor:
    """Scaled dot-product attention with the decomposed relative-position bias.

    Args:
        query, key, value: ``(B, heads, H*W, head_dim)``.
        table_h: ``(H, H, head_dim)`` and table_w: ``(W, W, head_dim)`` from
            :func:`relative_position_table`.

    Returns:
        ``(B, heads, H*W, head_dim)``.

    The bias for a query at (h, w) and key at (kh, kw) is ``q·Rh[h, kh] + q·Rw[w, kw]`` with the
    unscaled query. Query rows are processed in chunks so that the bias (and, on the CPU
    low-precision path, the attention matrix) of one chunk stays within a few tens of MB, never
    the whole ``(heads, H*W, H*W)`` product; softmax is per query row, so chunking does not
    change the result.
    """
    batch, heads, _, head_dim = query.shape
    q_grid = query.reshape(batch, heads, height, width, head_dim)
    # (B, heads, H, W, H) and (B, heads, H, W, W): small, computed for all rows at once.
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", q_grid, table_h)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", q_grid, table_w)
    if query.device.type == "cpu" and query.dtype in (torch.bfloat16, torch.float16):
        return _attention_cpu_low_precision(query, key, value, rel_h, rel_w)
    out = torch.empty_like(query)
    for start, stop in _row_chunks(query, height, width, _BIAS_CHUNK_BYTES):
        bias = _chunk_bias(rel_h, rel_w, start, stop)
        q_chunk = query[:, :, start * width : stop * width]
        out[:, :, start * width : stop * width] = F.scaled_dot_product_attention(
            q_chunk, key, value, attn_mask=bias
        )
    return out


def _row_chunks(
    query: torch.Tensor, height: int, width: int, max_bytes: int
) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` ranges of query grid rows whose ``(B, heads, rows*W, H*W)`` bias or
    scores stay within ``max_bytes`` (at least one row)."""
    batch, heads, tokens, _ = query.shape
    row_bytes = batch * heads * width * tokens * query.element_size()
    rows_per_chunk = max(1, min(height, max_bytes // max(row_bytes, 1)))
    for start in range(0, height, rows_per_chunk):
        yield start, min(height, start + rows_per_chunk)


def _chunk_bias(rel_h: torch.Tensor, rel_w: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """The decomposed rel-pos bias of query rows ``start:stop``: ``(B, heads, rows*W, H*W)``.

    Written straight into a buffer of that shape: a broadcast add whose result had to be
    reshaped afterwards would cost a second full copy of the bias.
    """
    batch, heads, height, width, _ = rel_h.shape
    rows = stop - start
    bias = rel_h.new_empty(batch, heads, rows * width, height * width)
    torch.add(
        rel_h[:, :, start:stop, :, :, None],
        rel_w[:, :, start:stop, :, None, :],
        out=bias.view(batch, heads, rows, width, height, width),
    )
    return bias


def _attention_cpu_low_precision(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
) -> torch.Tensor:
    """bf16/fp16 attention on the CPU from plain matmuls.

    PyTorch's CPU flash-attention kernel runs bf16 at its fp32 speed, while bf16 matmuls run
    at twice the fp32 rate where the CPU has native bf16. Per chunk of query rows: the bias is
    written into the scores buffer, ``q·kᵀ`` is accumulated onto it in the same matmul
    (``baddbmm``, fp32 accumulation), then softmax and ``·v``. A chunk's scores stay within
    ``_SCORES_CHUNK_BYTES`` so they are still in cache for the softmax.
    """
    batch, heads, tokens, head_dim = query.shape
    _, _, height, width, _ = rel_h.shape
    scaled = query * head_dim**-0.5
    # Contiguous once per call: strided views (they come from the qkv projection) would be
    # copied again by every matmul of every chunk.
    key_t = key.reshape(batch * heads, tokens, head_dim).contiguous().transpose(1, 2)
    value = value.contiguous()
    out = torch.empty_like(query)
    for start, stop in _row_chunks(query, height, width, _SCORES_CHUNK_BYTES):
        scores = _chunk_bias(rel_h, rel_w, start, stop)
        rows = stop - start
        q_chunk = scaled[:, :, start * width : stop * width].reshape(batch * heads, -1, head_dim)
        scores.view(batch * heads, rows * width, tokens).baddbmm_(q_chunk, key_t)
        probs = torch.softmax(scores, dim=-1)
        del scores
        torch.matmul(probs, value, out=out[:, :, start * width : stop * width])
    return out


class VisionAttention(nn.Module):
    """Multi-head self-attention over a (H, W) token grid with relative position bias."""

    def __init__(self, config: VisionConfig, window_size: int) -> None:
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, config.hidden_size * 3, bias=config.qkv_bias)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.use_rel_pos = config.use_rel_pos
        if self.use_rel_pos:
            size = window_size if window_size > 0 else config.grid_size
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * size - 1, config.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * size - 1, config.head_dim))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``."""
        batch, height, width, channels = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(
            batch, height * width, 3, self.num_attention_heads, -1
        )
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.use_rel_pos:
            out = attention_with_rel_pos(
                query,
                key,
                value,
                relative_position_table(height, self.rel_pos_h),
                relative_position_table(width, self.rel_pos_w),
                height,
                width,
            )
        else:
            out = F.scaled_dot_product_attention(query, key, value)
        out = out.transpose(1, 2).reshape(batch, height, width, channels)
        return self.proj(out)


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(B, H, W, C)`` -> ``(B * nW, window, window, C)`` after zero-padding H, W up to a
    multiple of ``window``; also returns the padded ``(Hp, Wp)``."""
    batch, height, width, channels = x.shape
    pad_h = (window - height % window) % window
    pad_w = (window - width % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = height + pad_h, width + pad_w
    x = x.reshape(batch, hp // window, window, wp // window, window, channels)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, channels)
    return windows, (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, w, w, C)`` -> ``(B, H, W, C)``."""
    hp, wp = padded
    height, width = size
    batch = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.reshape(batch, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(batch, hp, wp, -1)
    return x[:, :height, :width, :].contiguous()


class VisionLayer(nn.Module):
    def __init__(self, config: VisionConfig, window_size: int) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = VisionAttention(config, window_size)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MLPBlock(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.window_size = window_size

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``."""
        residual = hidden_states
        x = self.layer_norm1(hidden_states)
        if self.window_size > 0:
            size = (x.shape[1], x.shape[2])
            x, padded = window_partition(x, self.window_size)
            x = self.attn(x)
            x = window_unpartition(x, self.window_size, padded, size)
        else:
            x = self.attn(x)
        hidden_states = residual + x
        return hidden_states + self.mlp(self.layer_norm2(hidden_states))


class VisionNeck(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        out = config.output_channels
        self.conv1 = nn.Conv2d(config.hidden_size, out, kernel_size=1, bias=False)
        self.layer_norm1 = LayerNorm2d(out, eps=config.layer_norm_eps)
        self.conv2 = nn.Conv2d(out, out, kernel_size=3, padding=1, bias=False)
        self.layer_norm2 = LayerNorm2d(out, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, hidden)`` -> ``(B, out, H, W)``."""
        x = hidden_states.permute(0, 3, 1, 2)
        x = self.layer_norm1(self.conv1(x))
        return self.layer_norm2(self.conv2(x))


class VisionEncoder(nn.Module):
    """``(B, 3, 1024, 1024)`` normalised pixels -> ``(B, 256, 64, 64)`` image embeddings."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbeddings(config)
        self.pos_embed = (
            nn.Parameter(torch.zeros(1, config.grid_size, config.grid_size, config.hidden_size))
            if config.use_abs_pos
            else None
        )
        self.layers = nn.ModuleList(
            VisionLayer(config, 0 if i in config.global_attn_indexes else config.window_size)
            for i in range(config.num_hidden_layers)
        )
        self.neck = VisionNeck(config)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden_states = self.patch_embed(pixel_values)
        if self.pos_embed is not None:
            hidden_states = hidden_states + self.pos_embed
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        return self.neck(hidden_states)
