"""The one colour validator: only ``#rrggbb`` comes out of it."""

from __future__ import annotations

import pytest

from sam.dataset.colors import check_color, color_rgb, parse_color, safe_color
from sam.errors import ColorError


@pytest.mark.parametrize(
    ("given", "want"),
    [
        ("#ABC", "#aabbcc"),
        ("#12ab34", "#12ab34"),
        (" #12AB34\n", "#12ab34"),
        ("rgb(255, 0, 10)", "#ff000a"),
        ("rgba(12.4, 0, 255, 0.5)", "#0c00ff"),
        ("RGBA(1,2,3,1)", "#010203"),
    ],
)
def test_colours_are_normalised(given, want):
    assert parse_color(given) == check_color(given) == want


@pytest.mark.parametrize(
    "given",
    [
        '#abc" onmouseover="alert(1)',
        '#fff"><img src=x onerror=alert(2)>',
        "red;background-image:url(http://example.invalid/x.png)",
        "#abc;color:red",
        "#abcd",
        "abcdef",
        "red",
        "rgb(256, 0, 0)",
        "rgb(1, 2, 3) url(x)",
        "",
        None,
        0x123456,
    ],
)
def test_anything_else_is_rejected(given):
    assert parse_color(given) is None
    assert safe_color(given, "#010203") == "#010203"
    with pytest.raises(ColorError, match="not a colour: write it as #rrggbb"):
        check_color(given)


def test_rejected_values_are_quoted_short():
    with pytest.raises(ColorError) as caught:
        check_color("#" + "x" * 500)
    assert len(str(caught.value)) < 120


def test_color_rgb():
    assert color_rgb("#ff000a") == (255, 0, 10)
