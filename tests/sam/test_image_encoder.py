"""Window padding and head splitting of the ViT encoder, checked against plain indexing."""

from __future__ import annotations

import pytest
import torch

from sam.image_encoder import merge_windows, pad_to_windows, split_heads

HEADS, DIM, WINDOW = 2, 3, 4


def projections(height: int, width: int, batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, height, width, 3 * HEADS * DIM, generator=gen)


@pytest.mark.parametrize("fill", ["bias", None])
def test_pad_to_windows_fills_the_bottom_and_right(fill):
    x = projections(6, 9)
    value = torch.arange(x.shape[-1], dtype=x.dtype) if fill else None
    padded, size = pad_to_windows(x, WINDOW, value)
    assert size == (8, 12) and padded.shape == (2, 8, 12, x.shape[-1])
    torch.testing.assert_close(padded[:, :6, :9], x)
    expected = value if fill else torch.zeros(x.shape[-1])
    for border in (padded[:, 6:], padded[:, :, 9:]):
        torch.testing.assert_close(border, expected.expand_as(border))


def test_pad_to_windows_leaves_a_multiple_alone():
    x = projections(8, 4)
    padded, size = pad_to_windows(x, WINDOW, None)
    assert padded is x and size == (8, 4)


def test_split_heads_windows_are_row_major_tiles():
    x = projections(8, 12)
    query, key, value = split_heads(x, HEADS, WINDOW)
    assert query.shape == (2 * 2 * 3, HEADS, WINDOW * WINDOW, DIM)
    assert all(t.is_contiguous() for t in (query, key, value))
    channels = HEADS * DIM
    for b in range(2):
        for wy in range(2):
            for wx in range(3):
                tile = x[b, wy * WINDOW : (wy + 1) * WINDOW, wx * WINDOW : (wx + 1) * WINDOW]
                tokens = tile.reshape(WINDOW * WINDOW, 3, HEADS, DIM)
                index = b * 6 + wy * 3 + wx
                for part, got in enumerate((query, key, value)):
                    expected = tokens[:, part].transpose(0, 1)  # (heads, tokens, dim)
                    torch.testing.assert_close(got[index], expected)
    merged = merge_windows(query, WINDOW, (8, 12))
    torch.testing.assert_close(merged, x[..., :channels])


def test_split_heads_global_attention():
    x = projections(3, 5)
    parts = split_heads(x, HEADS, 0)
    tokens = x.reshape(2, 15, 3, HEADS, DIM)
    for index, got in enumerate(parts):
        assert got.shape == (2, HEADS, 15, DIM) and got.is_contiguous()
        torch.testing.assert_close(got, tokens[:, :, index].transpose(1, 2))
