"""Colours as they enter the app: every colour is validated to lower-case ``#rrggbb``.

Colours end up inside the page's HTML (``style="background:…"``), so a colour that is not
exactly ``#rrggbb`` could carry markup or CSS (``url(…)``) into it. Whatever a colour comes
from (a labels file, the label editor, an imported file, a database row written by another
program), it passes :func:`parse_color` first.
"""

from __future__ import annotations

import re

from ..errors import ColorError

_HEX = re.compile(r"#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_NUMBER = r"\s*(\d{1,3}(?:\.\d*)?)\s*"
# What Gradio's colour picker sent in some versions (6.31 sends #rrggbb); alpha is ignored.
_RGB = re.compile(rf"rgba?\({_NUMBER},{_NUMBER},{_NUMBER}(?:,\s*\d*\.?\d+%?\s*)?\)")
# The colours new labels get, in order (distinct, colour-blind-friendly-ish: Tableau 10
# without its grey), cycled; and the colour of objects without a label.
LABEL_PALETTE: tuple[str, ...] = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f",
)  # fmt: skip
UNLABELLED_COLOR = "#9ca3af"
# How much of a rejected value an error message quotes.
_SHOWN = 40


def parse_color(value: object) -> str | None:
    """``'#rgb'`` or ``'#rrggbb'`` (any case), ``'rgb(r, g, b)'`` or ``'rgba(r, g, b, a)'``
    (channels 0-255) -> lower-case ``'#rrggbb'``; None for anything else."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if match := _HEX.fullmatch(text):
        digits = match.group(1).lower()
        if len(digits) == 3:
            digits = "".join(ch * 2 for ch in digits)
        return "#" + digits
    if match := _RGB.fullmatch(text.lower()):
        channels = [round(float(c)) for c in match.groups()]
        if all(c <= 255 for c in channels):
            return "#" + "".join(f"{c:02x}" for c in channels)
    return None


def check_color(value: object) -> str:
    """:func:`parse_color`, raising :class:`~sam.errors.ColorError` for anything else."""
    color = parse_color(value)
    if color is None:
        shown = repr(value) if len(repr(value)) <= _SHOWN else repr(value)[:_SHOWN] + "…"
        raise ColorError(f"{shown} is not a colour: write it as #rrggbb, e.g. #e6194b.")
    return color


def safe_color(value: object, fallback: str) -> str:
    """``value`` as ``#rrggbb``, or ``fallback`` (itself a valid colour) when it is not one."""
    return parse_color(value) or check_color(fallback)


def color_rgb(color: str) -> tuple[int, int, int]:
    """``'#rrggbb'`` (as :func:`parse_color` returns) -> ``(r, g, b)`` ints 0-255."""
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)
