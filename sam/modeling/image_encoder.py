"""ViT image encoder: patch embedding, windowed and global attention with decomposed relative
position bias, and the convolutional neck.

Module and parameter names mirror the Hugging Face checkpoint keys under ``vision_encoder.``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d, MLPBlock, linear
from .config import VisionConfig

# Upper bound on the bytes of one chunk of the attention bias on the SDPA path (CUDA). Global
# attention over a 64x64 grid would otherwise build a (heads, 4096, 4096) fp32 bias: 805 MB for
# ViT-B.
_BIAS_CHUNK_BYTES = 32 * 2**20
# Upper bound on the bytes of one chunk of scores on the CPU path (built from matmuls): small
# enough to stay in the cores' L2 between the bias write, the q·kᵀ matmul, the softmax and the
# ·v matmul (measured against larger chunks and SDPA: bench/README.md, levers table).
_SCORES_CHUNK_BYTES = 2 * 2**20
# Widest key grid whose half-precision rel-pos bias rides in the q·kᵀ matmul (see _fold_bias).
_FOLD_MAX_WIDTH = 16
# Upper bound on the bytes of the MLP's hidden layer for one block of tokens.
_MLP_CHUNK_BYTES = 12 * 2**20


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
        """``(B, 3, S, S)`` -> ``(B, S/p, S/p, hidden)``, contiguous.

        Contiguous matters: the permuted view would hand its channel-strided layout down to
        every residual sum, and each LayerNorm and linear layer would copy it back (ViT-B, one
        thread: 0.4 s of a 6.9 s bf16 encode).
        """
        return self.projection(pixel_values).permute(0, 2, 3, 1).contiguous()


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
    unscaled query. Queries are processed in blocks so that the bias (and, on the CPU, the
    scores) of one block stays within a few MB, never the whole ``(heads, H*W, H*W)`` product;
    softmax is per query, so blocking does not change the result.
    """
    batch, heads, tokens, head_dim = query.shape
    q_grid = query.reshape(batch, heads, height, width, head_dim)
    # (B*heads, H*W, H) and (B*heads, H*W, W): small, computed for all queries at once.
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", q_grid, table_h).reshape(-1, tokens, height)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", q_grid, table_w).reshape(-1, tokens, width)
    if _needs_grad(query, key, value, rel_h, rel_w):
        return _attention_differentiable(query, key, value, rel_h, rel_w)
    if _use_matmul_attention(query):
        return _attention_from_matmuls(query, key, value, rel_h, rel_w)
    return _attention_sdpa(query, key, value, rel_h, rel_w)


def _needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd records this call: the fast paths write into preallocated buffers
    (``out=`` and in-place kernels), which autograd cannot differentiate."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _attention_differentiable(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
) -> torch.Tensor:
    """Attention for training: one SDPA call with the whole ``(B, heads, H*W, H*W)`` bias
    built out of place. Autograd keeps the attention probabilities for the backward pass
    anyway, so blocking the queries would save no memory here."""
    batch, heads, tokens, _ = query.shape
    bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(batch, heads, tokens, tokens)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=bias.to(query.dtype))


def _use_matmul_attention(query: torch.Tensor) -> bool:
    """Matmul-built attention on the CPU, the fused SDPA kernel elsewhere."""
    return query.device.type == "cpu"


def _score_blocks(
    groups: int, tokens: int, element_size: int, max_bytes: int
) -> Iterator[tuple[slice, slice]]:
    """(group, query) slices whose ``(groups, queries, tokens)`` scores fit in ``max_bytes``:
    whole groups (batch x heads) while one fits, else query ranges of one group (at least one
    query)."""
    row_bytes = tokens * element_size
    group_bytes = tokens * row_bytes
    if group_bytes <= max_bytes:
        group_step, query_step = max_bytes // group_bytes, tokens
    else:
        group_step, query_step = 1, max(1, max_bytes // row_bytes)
    for g in range(0, groups, group_step):
        for q in range(0, tokens, query_step):
            yield slice(g, min(groups, g + group_step)), slice(q, min(tokens, q + query_step))


def _write_bias(
    rel_h: torch.Tensor, rel_w: torch.Tensor, groups: slice, queries: slice, out: torch.Tensor
) -> None:
    """Write the decomposed bias of a block into ``out`` (``(g, q, H*W)``, contiguous):
    ``rel_h[g, q, kh] + rel_w[g, q, kw]`` at key ``kh * W + kw``, in one pass."""
    g, q, _ = out.shape
    torch.add(
        rel_h[groups, queries, :, None],
        rel_w[groups, queries, None, :],
        out=out.view(g, q, rel_h.shape[-1], rel_w.shape[-1]),
    )


def _fold_bias(width: int, dtype: torch.dtype) -> bool:
    """Whether to carry the bias in the q·kᵀ matmul (:func:`_fold_rel_pos`) instead of writing
    it. Only for half precision on short rows: a bf16 broadcast add over rows of 14 (SAM's
    windows) is 8x slower per element than over rows of 64, while fp32 adds are fast enough
    that the wider matmul loses (one thread, ViT-B windowed attention: bf16 58 -> 42 ms,
    fp32 67 -> 85 ms; global attention, 64 wide: slower at both precisions)."""
    return dtype in (torch.bfloat16, torch.float16) and width <= _FOLD_MAX_WIDTH


def _fold_rel_pos(
    query: torch.Tensor, key: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries and keys extended so that their product carries the bias:
    ``[q, rel_h, rel_w] · [k, onehot(kh), onehot(kw)] = q·k + rel_h[kh] + rel_w[kw]``.

    ``query`` ``(G, T, d)`` already scaled, ``key`` ``(G, T, d)``, ``rel_h`` ``(G, T, H)``,
    ``rel_w`` ``(G, T, W)`` -> ``(G, T, d + H + W)`` each.
    """
    height, width = rel_h.shape[-1], rel_w.shape[-1]
    rows = torch.arange(height, device=key.device).repeat_interleave(width)
    cols = torch.arange(width, device=key.device).repeat(height)
    onehot = torch.cat([F.one_hot(rows, height), F.one_hot(cols, width)], dim=-1).to(key.dtype)
    key = torch.cat([key, onehot.expand(key.shape[0], -1, -1)], dim=-1)
    return torch.cat([query, rel_h, rel_w], dim=-1), key


def _attention_from_matmuls(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
) -> torch.Tensor:
    """CPU attention from plain matmuls, block by block.

    Per block of (batch x heads, queries): the bias is written into the scores buffer, ``q·kᵀ``
    is accumulated onto it in the same matmul (``baddbmm``), then softmax and ``·v``; or, for
    small half-precision windows, the bias rides in the matmul itself (:func:`_fold_bias`).
    Blocks of ``_SCORES_CHUNK_BYTES`` stay in cache through all four steps. PyTorch's CPU
    flash-attention kernel is no match here: with a bias it reads a mask as large as the
    scores, and it runs bf16 at its fp32 speed while bf16 matmuls run at twice the rate on
    CPUs with native bf16.
    """
    batch, heads, tokens, head_dim = query.shape
    groups = batch * heads
    # Views when the inputs are contiguous (as :func:`split_windows` and :func:`split_heads`
    # make them); strided inputs are copied here once rather than by every matmul of every block.
    query = query.reshape(groups, tokens, head_dim)
    key = key.reshape(groups, tokens, head_dim)
    value = value.reshape(groups, tokens, head_dim)
    width = rel_w.shape[-1]
    fold = _fold_bias(width, query.dtype)
    if fold:
        query, key = _fold_rel_pos(query * head_dim**-0.5, key, rel_h, rel_w)
    key_t = key.transpose(1, 2)
    # ·v with a head dim that is not a multiple of 16 (SlimSAM-77: 14) takes a slow matmul
    # kernel: zero columns up to 16 make it faster at fp32 and cost nothing at bf16
    # (bench/README.md, levers table).
    if head_dim % 16:
        value = F.pad(value, (0, -head_dim % 16))
    out = value.new_empty(groups, tokens, value.shape[-1])
    for g, q in _score_blocks(groups, tokens, query.element_size(), _SCORES_CHUNK_BYTES):
        if fold:
            scores = torch.bmm(query[g, q], key_t[g])
        else:
            scores = query.new_empty(g.stop - g.start, q.stop - q.start, tokens)
            _write_bias(rel_h, rel_w, g, q, scores)
            scores.baddbmm_(query[g, q], key_t[g], alpha=head_dim**-0.5)
        probs = torch.softmax(scores, dim=-1)
        del scores
        torch.bmm(probs, value[g], out=out[g, q])
    return out[..., :head_dim].view(batch, heads, tokens, head_dim)


def _attention_sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
) -> torch.Tensor:
    """Fused scaled-dot-product attention (CUDA) with the bias passed as an additive mask, built
    for a range of queries at a time so it never spans the whole ``(heads, H*W, H*W)``."""
    batch, heads, tokens, _ = query.shape
    groups = batch * heads
    query_step = max(1, _BIAS_CHUNK_BYTES // (groups * tokens * query.element_size()))
    out = torch.empty_like(query)
    for start in range(0, tokens, query_step):
        q = slice(start, min(tokens, start + query_step))
        bias = query.new_empty(groups, q.stop - q.start, tokens)
        _write_bias(rel_h, rel_w, slice(0, groups), q, bias)
        out[:, :, q] = F.scaled_dot_product_attention(
            query[:, :, q], key, value, attn_mask=bias.view(batch, heads, -1, tokens)
        )
    return out


class VisionAttention(nn.Module):
    """Multi-head self-attention over a (H, W) token grid with relative position bias, either
    global or within non-overlapping windows."""

    def __init__(self, config: VisionConfig, window_size: int) -> None:
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.window_size = window_size
        self.qkv = nn.Linear(config.hidden_size, config.hidden_size * 3, bias=config.qkv_bias)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.use_rel_pos = config.use_rel_pos
        if self.use_rel_pos:
            size = window_size if window_size > 0 else config.grid_size
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * size - 1, config.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * size - 1, config.head_dim))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``.

        Windowed attention pads the grid up to a multiple of the window (64 -> 70 for SAM). The
        padding tokens are zeros, whose projection is the qkv bias: the projections are
        computed for the real tokens only and the padding filled with the bias, and the output
        projection runs after the padding is cropped away (16% fewer rows in both).
        """
        batch, height, width, channels = hidden_states.shape
        qkv = linear(hidden_states, self.qkv.weight, self.qkv.bias)
        window = self.window_size
        if window > 0:
            query, key, value = split_windows(qkv, self.num_attention_heads, window, self.qkv.bias)
        else:
            query, key, value = split_heads(qkv, self.num_attention_heads)
        size = (window, window) if window > 0 else (height, width)
        if self.use_rel_pos:
            out = attention_with_rel_pos(
                query,
                key,
                value,
                relative_position_table(size[0], self.rel_pos_h),
                relative_position_table(size[1], self.rel_pos_w),
                *size,
            )
        else:
            out = F.scaled_dot_product_attention(query, key, value)
        if window > 0:
            out = merge_windows(out, window, (height, width))
        else:
            out = out.transpose(1, 2).reshape(batch, height, width, channels)
        return linear(out, self.proj.weight, self.proj.bias)


def _tiles(size: int, window: int) -> Iterator[tuple[slice, slice, slice]]:
    """Split ``size`` positions into whole windows and a partial last one: (positions, window
    indices, offsets within the window) for each part."""
    whole, rest = divmod(size, window)
    if whole:
        yield slice(0, whole * window), slice(0, whole), slice(0, window)
    if rest:
        yield slice(whole * window, size), slice(whole, whole + 1), slice(0, rest)


def split_windows(
    qkv: torch.Tensor, heads: int, window: int, fill: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B, H, W, 3C)`` projections -> contiguous query, key, value ``(B * windows, heads,
    window², C/heads)``, windows in row-major order over the grid padded at the bottom and
    right to multiples of ``window``.

    Padding tokens get ``fill`` ``(3C,)`` (zeros when None): SAM pads the tokens with zeros
    before the projection, which projects them to the qkv bias. One copy: each projection goes
    straight to its window and head, the padding is written in place.
    """
    batch, height, width, _ = qkv.shape
    rows, cols = -(-height // window), -(-width // window)
    out = qkv.new_empty(3, batch, rows, cols, heads, window, window, qkv.shape[-1] // 3 // heads)
    # The same memory as the padded grid: (B, rows, wy, cols, wx, 3, heads, d).
    grid = out.permute(1, 2, 5, 3, 6, 0, 4, 7)
    source = qkv.view(batch, height, width, 3, heads, -1)
    for ys, rows_part, wy in _tiles(height, window):
        for xs, cols_part, wx in _tiles(width, window):
            target = grid[:, rows_part, wy, cols_part, wx]
            target.copy_(source[:, ys, xs].view(target.shape))
    value = 0.0 if fill is None else fill.view(3, heads, -1)
    if height % window:
        grid[:, -1, height % window :] = value
    if width % window:
        grid[:, :, :, -1, width % window :] = value
    query, key, value = out.view(3, -1, heads, window * window, out.shape[-1]).unbind(0)
    return query, key, value


def split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B, H, W, 3C)`` projections -> contiguous query, key, value ``(B, heads, H*W,
    C/heads)`` in one copy (global attention)."""
    batch, height, width, _ = qkv.shape
    parts = qkv.view(batch, height * width, 3, heads, -1).permute(2, 0, 3, 1, 4)
    query, key, value = parts.contiguous().unbind(0)
    return query, key, value


def merge_windows(x: torch.Tensor, window: int, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`split_windows` for one tensor, the padding dropped: ``(B * windows,
    heads, window², d)`` -> contiguous ``(B, H, W, heads * d)`` for ``size`` = (H, W), in one
    copy."""
    height, width = size
    rows, cols = -(-height // window), -(-width // window)
    _, heads, _, dim = x.shape
    # (B, rows, wy, cols, wx, heads, d)
    grid = x.view(-1, rows, cols, heads, window, window, dim).permute(0, 1, 4, 2, 5, 3, 6)
    out = x.new_empty(grid.shape[0], height, width, heads * dim)
    for ys, rows_part, wy in _tiles(height, window):
        for xs, cols_part, wx in _tiles(width, window):
            source = grid[:, rows_part, wy, cols_part, wx]
            out[:, ys, xs].view(source.shape).copy_(source)
    return out


class VisionLayer(nn.Module):
    def __init__(self, config: VisionConfig, window_size: int) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = VisionAttention(config, window_size)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MLPBlock(config.hidden_size, config.intermediate_size, config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``."""
        hidden_states = hidden_states + self.attn(self.layer_norm1(hidden_states))
        if _needs_grad(hidden_states):
            # Training: autograd needs each block's input, so no in-place residual.
            return hidden_states + self.mlp(self.layer_norm2(hidden_states))
        # Inference: the MLP and its residual in blocks of tokens, in place. The whole
        # hidden layer of ViT-B is 48 MB at fp32: a fresh allocation the kernel must fault in
        # page by page, and out of cache for the GELU (bench/README.md, levers table).
        tokens = hidden_states.view(-1, hidden_states.shape[-1])
        hidden_bytes = self.mlp.lin1.out_features * hidden_states.element_size()
        step = max(1, _MLP_CHUNK_BYTES // hidden_bytes)
        for start in range(0, tokens.shape[0], step):
            block = tokens[start : start + step]
            block += self.mlp(self.layer_norm2(block))
        return hidden_states


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
