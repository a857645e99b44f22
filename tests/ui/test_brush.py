"""Brush and eraser touch-up: the pure stroke (ui/brush.py), then the undoable edit it makes
(ui/actions.py touch_up) through the page's handlers, in a session and in a project."""

from __future__ import annotations

import io
import math
import zipfile

import numpy as np
import pytest
from PIL import Image
from project_app import add_object, start

from ui.brush import MAX_RADIUS, MAX_STROKE_POINTS, Stroke, paint, parse_stroke
from ui.errors import StrokeError

SIZE = (20, 30)  # (H, W)


def stroke(points, radius=0, mode="brush", size=SIZE) -> Stroke:
    return parse_stroke({"mode": mode, "points": points, "radius": radius}, size)


# -- the pure stroke ----------------------------------------------------------------------------


def test_a_dot_paints_exactly_the_disc_of_its_radius():
    out = paint(np.zeros(SIZE, bool), stroke([[10, 8]], radius=2))
    ys, xs = np.mgrid[: SIZE[0], : SIZE[1]]
    np.testing.assert_array_equal(out, (xs - 10) ** 2 + (ys - 8) ** 2 <= 4)
    one = paint(np.zeros(SIZE, bool), stroke([[3.7, 4.2]]))  # a pixel's inside: that pixel
    assert list(zip(*np.nonzero(one), strict=True)) == [(4, 3)]


def test_a_line_paints_its_pixels_as_wide_as_its_discs():
    out = paint(np.zeros(SIZE, bool), stroke([[5, 10], [25, 10]], radius=3))
    np.testing.assert_array_equal(np.nonzero(out[:, 15])[0], np.arange(7, 14))  # 2r + 1 rows
    assert out[10, 2:29].all() and not out[10, :2].any() and not out[10, 29:].any()
    thin = paint(np.zeros(SIZE, bool), stroke([[0, 0], [29, 19]]))
    assert thin.sum() == 30 and thin[0, 0] and thin[19, 29]  # one pixel per column


def test_the_eraser_removes_only_what_the_brush_would_paint():
    full = np.ones(SIZE, bool)
    erase = stroke([[5, 5], [20, 12]], radius=2, mode="erase")
    brush = stroke([[5, 5], [20, 12]], radius=2)
    np.testing.assert_array_equal(paint(full, erase), ~paint(np.zeros(SIZE, bool), brush))
    mask = np.zeros(SIZE, bool)
    mask[:, :10] = True
    # The brush only adds, the eraser only removes; the input is never written to.
    assert (paint(mask, brush) >= mask).all() and (paint(mask, erase) <= mask).all()
    assert mask[:, :10].all() and not mask[:, 10:].any()


def test_off_image_points_and_huge_radii_are_clamped():
    s = stroke([[-50, 5], [1e300, 5.5]], radius=1e9)
    assert s.points == ((0, 5), (SIZE[1] - 1, 5)) and s.radius == MAX_RADIUS
    assert paint(np.zeros(SIZE, bool), s).all()
    assert stroke([[2, 2]], radius=0.4).radius == 0


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"mode": "paint", "points": [[1, 1]], "radius": 1}, "brush or erase"),
        ({"mode": "brush", "points": [], "radius": 1}, "no points"),
        ({"mode": "brush", "radius": 1}, "no points"),
        ({"mode": "brush", "points": [[1, 1]] * (MAX_STROKE_POINTS + 1), "radius": 1}, "4,096"),
        ({"mode": "brush", "points": [[1, math.nan]], "radius": 1}, "finite"),
        ({"mode": "brush", "points": [[1, 1]], "radius": math.inf}, "finite"),
        ({"mode": "brush", "points": [[1, 1]], "radius": -2}, "negative"),
        ({"mode": "brush", "points": [[1, 1]], "radius": "12"}, "number"),
        ({"mode": "brush", "points": [[1, "2"]], "radius": 1}, "number"),
        ({"mode": "brush", "points": [[1, 2, 3]], "radius": 1}, "[x, y]"),
        ({"mode": "brush", "points": "1,2", "radius": 1}, "no points"),
        ({"mode": ["brush"], "points": [[1, 1]], "radius": 1}, "brush or erase"),
    ],
)
def test_bad_strokes_are_refused_with_a_message(payload, says):
    with pytest.raises(StrokeError) as info:
        parse_stroke(payload, SIZE)
    assert says in str(info.value)


# -- the edit, through the page's handlers ------------------------------------------------------


def send(h, s, points, radius, mode="brush"):
    return h.prompt(s, {"kind": "stroke", "mode": mode, "points": points, "radius": radius})


def test_a_stroke_touches_up_the_current_mask_in_one_undoable_step(handlers, opened):
    handlers.prompt(opened, {"kind": "point", "x": 500, "y": 375})
    handlers.on_pick(opened, _evt({"index": 1}))
    chosen = opened.doc.candidates.mask.to_array()
    send(handlers, opened, [[100, 100], [160, 120]], 6)
    expected = paint(chosen, stroke([[100, 100], [160, 120]], 6, size=chosen.shape))
    assert not opened.message_is_error, opened.message
    assert "Brush stroke on the current mask" in opened.message
    np.testing.assert_array_equal(opened.doc.candidates.mask.to_array(), expected)
    send(handlers, opened, [[500, 375]], 4, mode="erase")
    assert not opened.doc.candidates.mask.to_array()[375, 500]
    handlers.on_undo(opened)
    assert opened.message == "Undone: eraser stroke on the current mask."
    handlers.on_undo(opened)
    assert opened.message == "Undone: brush stroke on the current mask."
    np.testing.assert_array_equal(opened.doc.candidates.mask.to_array(), chosen)
    handlers.on_redo(opened)
    assert opened.message == "Redone: brush stroke on the current mask."
    handlers.on_accept(opened)
    np.testing.assert_array_equal(opened.doc.objects[0].mask.to_array(), expected)


def test_the_next_click_refines_the_touched_up_mask(handlers, opened, engine):
    handlers.prompt(opened, {"kind": "point", "x": 500, "y": 375})
    base = opened.doc.candidates.mask.to_array()
    send(handlers, opened, [[100, 100], [400, 100]], 30)
    touched = opened.doc.candidates.mask.to_array()
    handlers.prompt(opened, {"kind": "point", "x": 900, "y": 600})
    masks, _, _ = engine.predict(
        point_coords=np.array([[500, 375], [900, 600]]),
        point_labels=np.array([1, 1]),
        mask_input=engine.engine.mask_prompt(touched),
        multimask_output=False,
    )
    assert not np.array_equal(touched, base)
    np.testing.assert_array_equal(opened.doc.candidates.mask.to_array(), masks[0])


def test_a_brush_with_no_mask_starts_one_and_an_eraser_explains(handlers, opened):
    send(handlers, opened, [[10, 10]], 0, mode="erase")
    assert opened.message_is_error and "Nothing to erase" in opened.message
    send(handlers, opened, [[10, 10]], 0)
    assert opened.doc.candidates.mask.area == 1 and opened.doc.prompt.empty
    handlers.prompt(opened, {"kind": "point", "x": 500, "y": 375})
    assert len(opened.doc.candidates.masks) == 1  # refines the painted mask: no 3 candidates


def test_hostile_strokes_are_messages_and_change_nothing(handlers, opened):
    handlers.prompt(opened, {"kind": "point", "x": 500, "y": 375})
    before, history = opened.doc, len(opened.undo_stack)
    out = handlers.prompt(
        opened, {"kind": "stroke", "mode": "brush", "points": [[1, None]], "radius": 5}
    )
    assert opened.message_is_error and "number" in opened.message
    assert "Traceback" not in out["message"] and "sam-error" in out["message"]
    send(handlers, opened, [[0, 0]] * (MAX_STROKE_POINTS + 1), 3)
    assert "at most 4,096" in opened.message
    y, x = np.argwhere(before.candidates.mask.to_array())[0]
    send(handlers, opened, [[int(x), int(y)]], 0)  # already in the mask: nothing to undo
    assert "changed no pixel" in opened.message
    assert opened.doc is before and len(opened.undo_stack) == history


def test_a_stroke_on_a_selected_object_is_saved_and_exported(app, tmp_path):
    s, _ = start(app)
    mask = add_object(app, s, 300, 200)
    app.object_action(s, 1, "select")
    send(app, s, [[20, 20], [120, 60]], 8)
    expected = paint(mask, stroke([[20, 20], [120, 60]], 8, size=mask.shape))
    assert "Brush stroke on object #1" in s.message
    (row,) = app.project.store.objects(s.link.image_id)
    np.testing.assert_array_equal(row.mask(), expected)
    out = app.on_export_project(s, "png")
    (path,) = out["export_files"]["value"]
    with zipfile.ZipFile(path) as zf:
        inst = np.array(Image.open(io.BytesIO(zf.read("dog.jpg/instance_map.png"))))
    np.testing.assert_array_equal(inst == 1, expected)
    app.on_undo(s)
    assert s.message == "Undone: brush stroke on object #1."
    np.testing.assert_array_equal(app.project.store.objects(s.link.image_id)[0].mask(), mask)


def test_a_stroke_while_re_editing_saves_the_object_at_once(app):
    s, _ = start(app)
    mask = add_object(app, s, 300, 200)
    app.object_action(s, 1, "edit")
    send(app, s, [[300, 200]], 25, mode="erase")
    expected = paint(mask, stroke([[300, 200]], 25, mode="erase", size=mask.shape))
    np.testing.assert_array_equal(s.doc.candidates.mask.to_array(), expected)
    np.testing.assert_array_equal(app.project.store.objects(s.link.image_id)[0].mask(), expected)
    app.on_undo(s)
    assert s.message == "Undone: eraser stroke on object #1."


class _Evt:
    def __init__(self, data):
        self._data = data


def _evt(data):
    return _Evt(data)
