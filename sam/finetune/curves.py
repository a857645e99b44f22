"""``curves.png``: training loss, held-out mIoU and NoC per epoch, drawn with Pillow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from .trainer import EpochRecord

_PANEL = (360, 260)
_MARGIN = 40
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def _panel(
    draw: ImageDraw.ImageDraw,
    left: int,
    title: str,
    series: dict[str, list[tuple[float, float]]],
    y_range: tuple[float, float],
    x_max: int,
) -> None:
    """One chart at x offset ``left``: axes, the y range's ends, a line and legend entry per
    series of (epoch, value) points."""
    width, height = _PANEL
    x0, y0, x1, y1 = left + _MARGIN, _MARGIN, left + width - 10, height - _MARGIN
    draw.rectangle((x0, y0, x1, y1), outline="#444444")
    draw.text((x0, 8), title, fill="black")
    low, high = y_range
    span = (high - low) or 1.0
    draw.text((left + 2, y0 - 6), f"{high:.3g}", fill="#444444")
    draw.text((left + 2, y1 - 6), f"{low:.3g}", fill="#444444")
    draw.text((x0, y1 + 6), "epoch 0", fill="#444444")
    draw.text((x1 - 20, y1 + 6), str(x_max), fill="#444444")

    def at(epoch: float, value: float) -> tuple[float, float]:
        x = x0 + (x1 - x0) * epoch / max(1, x_max)
        return x, y1 - (y1 - y0) * (value - low) / span

    for index, (name, points) in enumerate(series.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        xy = [at(e, v) for e, v in points]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        for x, y in xy:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
        draw.text((x0 + 6, y0 + 6 + 12 * index), name, fill=colour)


def draw_curves(history: Sequence[EpochRecord], path: str | Path, max_clicks: int) -> None:
    """Write the three charts of ``history`` side by side as a PNG."""
    image = Image.new("RGB", (3 * _PANEL[0], _PANEL[1]), "white")
    draw = ImageDraw.Draw(image)
    x_max = max(record.epoch for record in history)
    losses = [(r.epoch, r.train_loss) for r in history if r.train_loss is not None]
    loss_range = (0.0, max((v for _, v in losses), default=1.0))
    _panel(draw, 0, "training loss", {"loss": losses}, loss_range, x_max)
    miou = {
        f"mIoU@{k}": [(r.epoch, getattr(r.val, f"miou_{k}click")) for r in history] for k in (1, 5)
    }
    miou["mIoU box"] = [(r.epoch, r.val.miou_box) for r in history]
    _panel(draw, _PANEL[0], "held-out mIoU", miou, (0.0, 1.0), x_max)
    noc = {
        "NoC@85": [(r.epoch, r.val.noc85) for r in history],
        "NoC@90": [(r.epoch, r.val.noc90) for r in history],
    }
    _panel(draw, 2 * _PANEL[0], "held-out NoC (clicks)", noc, (0.0, float(max_clicks)), x_max)
    # Redrawn after every epoch while a page may be reading it: never show a half-written file.
    partial = path.with_name(f".{path.name}.partial")
    image.save(partial, format="PNG")
    partial.replace(path)
