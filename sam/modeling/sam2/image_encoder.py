"""SAM 2's image encoder: the Hiera backbone (multi-scale stages of windowed and global attention,
query pooling between stages) and the FPN neck that gives the decoder its three feature maps.

Names mirror the HF checkpoint keys under ``vision_encoder.`` (``backbone.`` and ``neck.``).
Tensors run channels-last ``(B, H, W, C)`` inside the backbone, as in Meta's and HF's code.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..common import activation, linear
from .config import HieraConfig, Sam2VisionConfig


class HieraMLP(nn.Module):
    """``proj_out(act(proj_in(x)))`` over the last dimension."""

    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.proj_in = nn.Linear(dim, hidden)
        self.proj_out = nn.Linear(hidden, dim)
        self.activation = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.activation, nn.GELU):
            hidden = linear(x, self.proj_in.weight, self.proj_in.bias, gelu=True)
        else:
            hidden = self.activation(linear(x, self.proj_in.weight, self.proj_in.bias))
        return linear(hidden, self.proj_out.weight, self.proj_out.bias)


def _pool(x: torch.Tensor, stride: tuple[int, int] | None) -> torch.Tensor:
    """2-D max pooling of a channels-last ``(B, H, W, C)`` map (identity without a stride)."""
    if stride is None:
        return x
    return F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride).permute(
        0, 2, 3, 1
    )


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(B, H, W, C)`` -> ``(B * nh * nw, window, window, C)`` windows, zero-padding the bottom
    and right to a multiple of ``window``; also returns the padded ``(H, W)``."""
    batch, height, width, channels = x.shape
    pad_h, pad_w = (-height) % window, (-width) % window
    if pad_h or pad_w:  # F.pad copies even when it adds nothing
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = height + pad_h, width + pad_w
    x = x.view(batch, hp // window, window, wp // window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, channels), (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: windows -> ``(B, H, W, C)`` without the padding (a
    view of the padded grid when there is padding)."""
    hp, wp = padded
    batch = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(batch, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(batch, hp, wp, -1)
    return x[:, : size[0], : size[1]]


class MultiScaleAttention(nn.Module):
    """Attention within each window, optionally max-pooling the queries (stage transitions)."""

    def __init__(
        self, dim: int, dim_out: int, heads: int, query_stride: tuple[int, int] | None
    ) -> None:
        super().__init__()
        self.num_attention_heads = heads
        self.query_stride = query_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, dim)`` -> ``(B, H', W', dim_out)`` (H' = H / stride when pooling)."""
        batch, height, width, _ = x.shape
        heads = self.num_attention_heads
        qkv = linear(x, self.qkv.weight, self.qkv.bias).reshape(batch, height * width, 3, heads, -1)
        q, k, v = qkv.unbind(2)  # (B, HW, heads, d)
        if self.query_stride is not None:
            q = _pool(q.reshape(batch, height, width, -1), self.query_stride)
            height, width = q.shape[1:3]
            q = q.reshape(batch, height * width, heads, -1)
        # PyTorch's fused kernel: blocked matmuls (SAM 1's CPU path) were slower here at 2
        # threads (bench/README.md, SAM 2.1 section).
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        )
        out = out.transpose(1, 2).reshape(batch, height, width, -1)
        return linear(out, self.proj.weight, self.proj.bias)


#: Tokens per chunk of windows in :meth:`MultiScaleBlock._forward_window_chunks`: 4096 and
#: 16384 ran alike on an idle CPU, 1024 slower; fewer chunks mean fewer thread hand-offs, which
#: cost the most on a busy machine (bench/README.md, SAM 2.1 section).
WINDOW_CHUNK_TOKENS = 16384


class MultiScaleBlock(nn.Module):
    """One Hiera block: (windowed) attention with an optional query-pooling skip, then an MLP."""

    def __init__(self, config: HieraConfig, stage: int, index_in_stage: int, index: int) -> None:
        super().__init__()
        first_of_later_stage = stage > 0 and index_in_stage == 0
        self.dim = config.embed_dim_per_stage[stage - 1 if first_of_later_stage else stage]
        self.dim_out = config.embed_dim_per_stage[stage]
        # The first block of a stage still works on the previous stage's windows.
        window = config.window_size_per_stage[stage - 1 if first_of_later_stage else stage]
        self.window_size = 0 if index in config.global_attention_blocks else window
        pooled = first_of_later_stage and stage <= config.num_query_pool_stages
        self.query_stride = config.query_stride if pooled else None
        self.layer_norm1 = nn.LayerNorm(self.dim, eps=config.layer_norm_eps)
        self.attn = MultiScaleAttention(
            self.dim, self.dim_out, config.num_attention_heads_per_stage[stage], self.query_stride
        )
        self.layer_norm2 = nn.LayerNorm(self.dim_out, eps=config.layer_norm_eps)
        self.mlp = HieraMLP(self.dim_out, int(self.dim_out * config.mlp_ratio), config.hidden_act)
        if self.dim != self.dim_out:
            self.proj = nn.Linear(self.dim, self.dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, dim)`` -> ``(B, H', W', dim_out)``."""
        window = self.window_size
        unpadded = window > 0 and x.shape[1] % window == 0 and x.shape[2] % window == 0
        if unpadded and not torch.is_grad_enabled():
            return self._forward_window_chunks(x)
        shortcut = x
        x = self.layer_norm1(x)
        if self.dim != self.dim_out:
            shortcut = _pool(linear(x, self.proj.weight, self.proj.bias), self.query_stride)
        if window > 0:
            x, padded = window_partition(x, window)
        x = self.attn(x)
        if window > 0:
            height, width = shortcut.shape[1:3]
            if self.query_stride is not None:
                # Pooling shrank every window (and the padded grid) by the stride.
                window //= self.query_stride[0]
                padded = (height + (-height) % window, width + (-width) % window)
            x = window_unpartition(x, window, padded, (height, width))
        x = shortcut + x
        # In place on the MLP's fresh output (its backward does not need it).
        return self.mlp(self.layer_norm2(x)).add_(x)

    def _forward_window_chunks(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without gradients on a map that needs no padding, the whole block
        run on :data:`WINDOW_CHUNK_TOKENS` tokens' windows at a time: windows are independent
        and everything after the attention acts per token, so the result is the same, while
        no intermediate is allocated at full size (the stage-1 qkv alone is 151 MB on a
        1024x1024 input: fresh pages the kernel must map and zero on every encode) and each
        is read back while it is still in cache (bench/README.md, SAM 2.1 section).
        ``(B, H, W, dim)`` -> ``(B, H', W', dim_out)``."""
        height, width = x.shape[1:3]
        window = self.window_size
        stride = self.query_stride[0] if self.query_stride is not None else 1
        windows, _ = window_partition(x, window)
        out_window = window // stride
        out = windows.new_empty(windows.shape[0], out_window, out_window, self.dim_out)
        step = max(1, WINDOW_CHUNK_TOKENS // (window * window))
        for start in range(0, windows.shape[0], step):
            chunk = windows[start : start + step]
            normed = self.layer_norm1(chunk)
            shortcut = chunk
            if self.dim != self.dim_out:
                # Windows start at multiples of the stride, so pooling each window equals
                # pooling the whole map.
                projected = linear(normed, self.proj.weight, self.proj.bias)
                shortcut = _pool(projected, self.query_stride)
            y = self.attn(normed).add_(shortcut)
            torch.add(self.mlp(self.layer_norm2(y)), y, out=out[start : start + step])
        size = (height // stride, width // stride)
        return window_unpartition(out, out_window, size, size)


class PatchEmbed(nn.Module):
    def __init__(self, config: HieraConfig) -> None:
        super().__init__()
        self.projection = nn.Conv2d(
            config.num_channels,
            config.hidden_size,
            kernel_size=config.patch_kernel_size,
            stride=config.patch_stride,
            padding=config.patch_padding,
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> channels-last ``(B, H/4, W/4, C)``, contiguous: the convolution
        runs on channels-last pixels, so the permute is free and the first LayerNorm reads
        the map in place (on an NCHW conv output both cost a copy, and the conv is slower)."""
        pixels = pixels.contiguous(memory_format=torch.channels_last)
        return self.projection(pixels).permute(0, 2, 3, 1)

    def grid_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """The ``(H', W')`` token grid of a ``(H, W)`` input."""
        conv = self.projection
        return tuple(  # type: ignore[return-value]
            (size + 2 * pad - kernel) // stride + 1
            for size, pad, kernel, stride in zip(
                image_size, conv.padding, conv.kernel_size, conv.stride, strict=True
            )
        )


class Hiera(nn.Module):
    """Hierarchical ViT: one feature map per stage, each half the size of the one before."""

    def __init__(self, config: HieraConfig) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(config)
        # A background embedding interpolated to the grid plus one tiled per window.
        self.pos_embed = nn.Parameter(
            torch.zeros(1, config.hidden_size, *config.window_positional_embedding_background_size)
        )
        window = config.window_size_per_stage[0]
        self.pos_embed_window = nn.Parameter(torch.zeros(1, config.hidden_size, window, window))
        self.stage_ends = [int(i) for i in np.cumsum(config.blocks_per_stage) - 1]
        blocks, index = [], 0
        for stage, count in enumerate(config.blocks_per_stage):
            for index_in_stage in range(count):
                blocks.append(MultiScaleBlock(config, stage, index_in_stage, index))
                index += 1
        self.blocks = nn.ModuleList(blocks)

    def position_embedding(self, image_size: tuple[int, int]) -> torch.Tensor:
        """The contiguous ``(1, H', W', C)`` positional embedding of a ``(H, W)`` input's token
        grid. It depends on the weights alone: the engine computes it once (the bicubic
        interpolation is not cheap) and passes it to :meth:`forward`."""
        height, width = self.patch_embed.grid_size(image_size)
        pos = F.interpolate(self.pos_embed, size=(height, width), mode="bicubic")
        window = self.pos_embed_window
        pos = pos + window.tile(1, 1, height // window.shape[2], width // window.shape[3])
        return pos.permute(0, 2, 3, 1).contiguous()

    def forward(
        self, pixels: torch.Tensor, pos_embed: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """``(B, 3, 1024, 1024)`` -> each stage's last output, channels-last, high res first:
        ``(B, 256, 256, C0)``, ``(B, 128, 128, C1)``, ``(B, 64, 64, C2)``, ``(B, 32, 32, C3)``.

        ``pos_embed``: :meth:`position_embedding` of this input size, computed earlier.
        """
        x = self.patch_embed(pixels)
        if pos_embed is None:
            pos_embed = self.position_embedding((pixels.shape[2], pixels.shape[3]))
        x = x + pos_embed.to(x.dtype)
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x)
        return outputs


def conv_channels_last(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` on a channels-last ``(B, H, W, C)`` map -> ``(B, C', H, W)``. A 1x1 convolution
    (every released config's) is a linear layer over the channels: run on the map as it is, it
    needs no permuted copy and no convolution kernel (the output is a channels-last view)."""
    pointwise = conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.groups == 1
    if pointwise and conv.padding in ((0, 0), "valid"):
        return linear(x, conv.weight.flatten(1), conv.bias).permute(0, 3, 1, 2)
    return conv(x.permute(0, 3, 1, 2))


class FpnNeck(nn.Module):
    """1x1 lateral convolutions to a common width, with top-down (nearest 2x) fusion into the
    levels named in ``fpn_top_down_levels``."""

    def __init__(self, config: Sam2VisionConfig) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(
                channels,
                config.fpn_hidden_size,
                kernel_size=config.fpn_kernel_size,
                stride=config.fpn_stride,
                padding=config.fpn_padding,
            )
            for channels in config.backbone_channel_list
        )
        self.fpn_top_down_levels = tuple(config.fpn_top_down_levels)

    def forward(self, stages: list[torch.Tensor]) -> list[torch.Tensor]:
        """Channels-last stage outputs (high res first) -> ``(B, C, h, w)`` maps, high res
        first. ``convs[0]`` takes the lowest-resolution stage, as in Meta's neck."""
        last = len(self.convs) - 1
        outputs: list[torch.Tensor] = []
        previous: torch.Tensor | None = None
        for i in range(last, -1, -1):
            lateral = conv_channels_last(self.convs[last - i], stages[i])
            if i in self.fpn_top_down_levels and i != last and previous is not None:
                top_down = F.interpolate(previous.float(), scale_factor=2.0, mode="nearest")
                lateral = lateral + top_down.to(lateral.dtype)
            previous = lateral
            outputs.append(lateral)
        return outputs[::-1]


class Sam2VisionEncoder(nn.Module):
    """Hiera backbone and FPN neck: pixels -> the ``num_feature_levels`` highest-resolution maps."""

    def __init__(self, config: Sam2VisionConfig) -> None:
        super().__init__()
        self.num_feature_levels = config.num_feature_levels
        self.backbone = Hiera(config.backbone_config)
        self.neck = FpnNeck(config)

    def forward(
        self, pixels: torch.Tensor, pos_embed: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """``(B, 3, 1024, 1024)`` -> ``[(B, C, 256, 256), (B, C, 128, 128), (B, C, 64, 64)]``;
        ``pos_embed`` as for :meth:`Hiera.forward`."""
        return self.neck(self.backbone(pixels, pos_embed))[: self.num_feature_levels]
