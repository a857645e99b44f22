"""The one way values get into the page's HTML: escaped text, escaped attributes, safe colours.

Names, paths and messages come from users, files and databases written by others; every value
put into markup goes through :func:`text` or :func:`attrs`, and every colour that reaches a
``style`` through :func:`css_color`, so none of them can add markup, script or CSS.
"""

from __future__ import annotations

import html

from sam.dataset.colors import LABEL_PALETTE, safe_color

# Shown instead of a colour that is not #rrggbb (the first colour of ui.state's palette).
FALLBACK_COLOR = LABEL_PALETTE[0]


def text(value: object) -> str:
    """``value`` as element content: ``<``, ``>``, ``&`` and quotes escaped."""
    return html.escape(str(value), quote=True)


def attrs(**values: object) -> str:
    """Attributes for a tag, each value escaped: ``attrs(class_="a", data_id=3)`` ->
    ``' class="a" data-id="3"'``.

    A trailing ``_`` is dropped (``class_``), other underscores become ``-``; attributes whose
    value is None are left out.
    """
    return "".join(
        f' {name.rstrip("_").replace("_", "-")}="{text(value)}"'
        for name, value in values.items()
        if value is not None
    )


def css_color(value: object) -> str:
    """``value`` as ``#rrggbb`` for a ``style``; :data:`FALLBACK_COLOR` when it is not one."""
    return safe_color(value, FALLBACK_COLOR)
