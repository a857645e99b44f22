"""Window and head splitting of the ViT encoder, checked against plain padding and indexing."""

from __future__ import annotations

import pytest
import torch

from sam.modeling.image_encoder import merge_windows, split_heads, split_windows

HEADS, DIM, WINDOW = 2, 3, 4


def projections(height: int, width: int, batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, height, width, 3 * HEADS * DIM, generator=gen)


def padded_plainly(x: torch.Tensor, fill: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
    batch, height, width, channels = x.shape
    out = fill.expand(batch, hp, wp, channels).clone()
    out[:, :height, :width] = x
    return out


@pytest.mark.parametrize("fill", ["bias", None])
@pytest.mark.parametrize(
    ("height", "width"),
    [(8, 12), (6, 9), (3, 8), (8, 2)],
    ids=["multiples", "both-padded", "rows-padded", "cols-padded"],
)
def test_split_windows_are_row_major_tiles_of_the_padded_grid(fill, height, width):
    x = projections(height, width)
    value = torch.arange(x.shape[-1], dtype=x.dtype) if fill else None
    query, key, value_ = split_windows(x, HEADS, WINDOW, value)
    hp, wp = -(-height // WINDOW) * WINDOW, -(-width // WINDOW) * WINDOW
    rows, cols = hp // WINDOW, wp // WINDOW
    assert query.shape == (2 * rows * cols, HEADS, WINDOW * WINDOW, DIM)
    assert all(t.is_contiguous() for t in (query, key, value_))
    grid = padded_plainly(x, value if fill else torch.zeros(x.shape[-1]), hp, wp)
    for b in range(2):
        for wy in range(rows):
            for wx in range(cols):
                tile = grid[b, wy * WINDOW : (wy + 1) * WINDOW, wx * WINDOW : (wx + 1) * WINDOW]
                tokens = tile.reshape(WINDOW * WINDOW, 3, HEADS, DIM)
                index = (b * rows + wy) * cols + wx
                for part, got in enumerate((query, key, value_)):
                    expected = tokens[:, part].transpose(0, 1)  # (heads, tokens, dim)
                    torch.testing.assert_close(got[index], expected)
    merged = merge_windows(query, WINDOW, (height, width))
    assert merged.is_contiguous()
    torch.testing.assert_close(merged, x[..., : HEADS * DIM])


def test_split_heads_global_attention():
    x = projections(3, 5)
    parts = split_heads(x, HEADS)
    tokens = x.reshape(2, 15, 3, HEADS, DIM)
    for index, got in enumerate(parts):
        assert got.shape == (2, HEADS, 15, DIM) and got.is_contiguous()
        torch.testing.assert_close(got, tokens[:, :, index].transpose(1, 2))
