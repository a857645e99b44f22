"""Segment everything and Find objects in the app, at handler level: proposals equal the
engine's, a click toggles the smallest proposal under it, accept-above, accepted proposals become
undoable objects (saved in a project), text proposals carry their phrases, and a missing extra
or detector is a message in the page."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from checkpoints import save_random_grounding_dino
from PIL import Image

from sam import SamPredictor, load_model
from sam.automatic import AutoMaskConfig, AutomaticMaskGenerator
from sam.text_prompt import GroundingDetector, TextPromptConfig, segment_by_text
from ui import proposals
from ui.handlers import Handlers
from ui.handlers.proposals import _Progress
from ui.models import ModelManager
from ui.project import Project
from ui.proposals import TextDetectors
from ui.state import Mask, Proposal, Proposals, Session

# Random weights give small logits: these settings keep a dozen overlapping proposals.
SETTINGS = {"points_per_side": 4, "pred_iou": 0.0, "stability": 0.5, "min_area": 0, "nms": 1.0}
OFFSET = 0.02
ENGINE_CONFIG = AutoMaskConfig(
    points_per_side=4,
    pred_iou_thresh=0.0,
    stability_score_thresh=0.5,
    stability_score_offset=OFFSET,
    box_nms_thresh=1.0,
)
LOOSE_TEXT = {"box_threshold": 0.05, "text_threshold": 0.0}


class _Evt:
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data


@pytest.fixture(scope="module")
def small_image(truck: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """truck.jpg at 300×200: fast to decode and upscale masks for."""
    path = tmp_path_factory.mktemp("small") / "truck_small.png"
    Image.fromarray(np.ascontiguousarray(truck[::6, ::6])).save(path)
    return path


@pytest.fixture
def session(handlers: Handlers, small_image: Path) -> Session:
    s = Session()
    list(handlers.on_upload(s, str(small_image)))
    assert s.doc.image is not None and not s.message_is_error, s.message
    return s


def everything(handlers: Handlers, session: Session) -> list[dict[str, Any]]:
    updates = list(handlers.on_everything(session, *SETTINGS.values(), OFFSET))
    assert session.doc.proposals is not None, session.message
    return updates


@pytest.fixture
def reviewing(handlers: Handlers, session: Session) -> Session:
    everything(handlers, session)
    assert len(session.doc.proposals.items) >= 5
    return session


def arrays(props: Proposals) -> list[np.ndarray]:
    return [p.mask.to_array() for p in props.items]


# -- segment everything --------------------------------------------------------------------------


def test_segment_everything_equals_the_generator_without_reencoding(
    handlers: Handlers, session: Session, manager: ModelManager, monkeypatch
):
    model = manager.predictor().model
    encodes = []
    original = model.encode_image
    monkeypatch.setattr(model, "encode_image", lambda *a: encodes.append(1) or original(*a))
    updates = everything(handlers, session)
    assert encodes == [], "the embedding cached on upload must be reused"
    monkeypatch.undo()

    assert "Segmenting everything" in updates[0]["stage"] and "sam-busy" in updates[0]["stage"]
    final = updates[-1]
    assert "sam-busy" not in final["stage"] and 'data-proposals="1"' in final["stage"]
    assert "Reviewing proposals" in final["stage"]
    assert "Reviewing proposals" in final["cands"]
    assert final["proposal_panel"]["visible"] is True
    assert final["prop_label"]["value"] == session.active_label

    expected = AutomaticMaskGenerator(model, ENGINE_CONFIG).generate(session.doc.image.array)
    props = session.doc.proposals
    assert props.source == "everything" and len(props.items) == len(expected)
    for got, want in zip(props.items, expected, strict=True):
        np.testing.assert_array_equal(got.mask.to_array(), want.segmentation)
        assert got.score == pytest.approx(want.predicted_iou)
        assert got.prompt.points == ((int(want.point[0]), int(want.point[1]), 1),)
        assert not got.accepted
    assert len({p.color for p in props.items}) == len(props.items)  # each its own colour
    for i in range(len(props.items)):
        assert f'data-event="toggle" data-index="{i}"' in final["proposals"]


def test_progress_is_shown_while_it_runs(handlers: Handlers, session: Session, monkeypatch):
    monkeypatch.setattr("ui.handlers.proposals.POLL_SECONDS", 0.01)
    updates = everything(handlers, session)
    busy = [u["stage"] for u in updates if "sam-busy" in u.get("stage", "")]
    assert len(busy) >= 2, "the veil is re-rendered while the generator runs"
    jobs = {stage.split('data-job="')[1].split('"')[0] for stage in busy}
    assert len(jobs) == 1, "one clock for the whole run"
    assert "sam-busy" not in updates[-1]["stage"]
    assert set(updates[1]) == {"stage"}, "polling re-renders the stage only"


def test_progress_line():
    progress = _Progress("Segmenting everything…")
    assert progress.line() == "Segmenting everything…"
    progress.done, progress.total = 3, 16
    assert progress.line() == "Segmenting everything… 18 % (3/16)"


def test_one_run_at_a_time_per_tab(handlers: Handlers, session: Session):
    first = handlers.on_everything(session, *SETTINGS.values(), OFFSET)
    next(first)  # started: the worker is running
    second = list(handlers.on_everything(session, *SETTINGS.values(), OFFSET))
    assert session.message_is_error and "Still working" in second[-1]["message"]
    list(first)
    assert session.doc.proposals is not None
    assert not handlers.proposal_jobs
    everything(handlers, session)  # and it can run again


def test_segment_everything_before_an_image(handlers: Handlers):
    session = Session()
    updates = list(handlers.on_everything(session, *SETTINGS.values()))
    assert session.message_is_error and "Open an image first" in session.message
    assert session.doc.proposals is None and len(updates) == 1


def test_nothing_found_is_a_message(handlers: Handlers, session: Session):
    strict = {**SETTINGS, "pred_iou": 5.0}
    list(handlers.on_everything(session, *strict.values(), OFFSET))
    assert session.doc.proposals is None
    assert session.message_is_error and "found nothing" in session.message


# -- reviewing ------------------------------------------------------------------------------------


def test_a_click_toggles_the_smallest_proposal_under_it(handlers: Handlers, reviewing: Session):
    masks = arrays(reviewing.doc.proposals)
    areas = np.array([m.sum() for m in masks])
    stack = np.stack(masks)
    covered = np.argwhere(stack.sum(0) >= 2)  # pixels under two proposals or more
    assert len(covered), "the test needs overlapping proposals"
    for y, x in covered[:: max(1, len(covered) // 4)][:4]:
        hits = np.flatnonzero(stack[:, y, x])
        want = int(hits[np.argmin(areas[hits])])
        before = reviewing.doc.proposals.items[want].accepted
        n_undo = len(reviewing.undo_stack)
        update = handlers.prompt(reviewing, {"kind": "point", "x": int(x), "y": int(y)})
        assert reviewing.doc.proposals.items[want].accepted is not before
        assert reviewing.doc.prompt.empty and reviewing.doc.candidates is None  # no SAM point
        assert len(reviewing.undo_stack) == n_undo + 1
        assert "Reviewing proposals" in update["stage"]
        accepted = sum(p.accepted for p in reviewing.doc.proposals.items)
        assert f'<b class="sam-props-count">{accepted}</b>' in update["proposals"]


def test_click_on_hand_made_nested_proposals(handlers: Handlers, session: Session):
    h, w = session.doc.image.size
    big = np.zeros((h, w), bool)
    big[20:120, 30:200] = True
    small = np.zeros((h, w), bool)
    small[50:70, 60:90] = True
    items = tuple(
        Proposal(Mask.from_array(m), score=s, mask_score=s, color=c)
        for m, s, c in ((big, 0.9, "#ff0000"), (small, 0.8, "#00ff00"))
    )
    assert proposals.show(session, Proposals(items, "everything"), session.doc.image.key)
    handlers.prompt(session, {"kind": "point", "x": 65, "y": 55})  # inside both
    assert [p.accepted for p in session.doc.proposals.items] == [False, True]
    handlers.prompt(session, {"kind": "point", "x": 35, "y": 100})  # only the big one
    assert [p.accepted for p in session.doc.proposals.items] == [True, True]
    handlers.prompt(session, {"kind": "point", "x": 89, "y": 69})  # small's last pixel
    assert [p.accepted for p in session.doc.proposals.items] == [True, False]
    handlers.prompt(session, {"kind": "point", "x": 5, "y": 5})  # outside all
    assert session.message_is_error and "No proposal at (5, 5)" in session.message
    assert [p.accepted for p in session.doc.proposals.items] == [True, False]
    handlers.prompt(session, {"kind": "box", "box": [0, 0, 50, 50]})
    assert session.message_is_error and session.doc.prompt.empty
    # A chip in the panel toggles too.
    handlers.on_proposal(session, _Evt({"index": 1}))
    assert [p.accepted for p in session.doc.proposals.items] == [True, True]


def test_accept_all_above_a_score(handlers: Handlers, reviewing: Session):
    scores = [p.score for p in reviewing.doc.proposals.items]
    threshold = float(np.median(scores))
    handlers.on_accept_above(reviewing, threshold)
    got = [p.accepted for p in reviewing.doc.proposals.items]
    assert got == [s >= threshold for s in scores] and any(got) and not all(got)
    # It only adds: a lower-scored one accepted by hand stays accepted.
    low = int(np.argmin(scores))
    handlers.on_proposal(reviewing, _Evt({"index": low}))
    handlers.on_accept_above(reviewing, threshold)
    assert reviewing.doc.proposals.items[low].accepted
    handlers.on_reject_all(reviewing)
    assert not any(p.accepted for p in reviewing.doc.proposals.items)


def test_accepted_become_objects_with_the_label_and_undo(handlers: Handlers, reviewing: Session):
    props = reviewing.doc.proposals
    for i in (0, 2, 3):
        handlers.on_proposal(reviewing, _Evt({"index": i}))
    chosen = [props.items[i] for i in (0, 2, 3)]
    update = handlers.on_add_accepted(reviewing, "vehicle")
    doc = reviewing.doc
    assert doc.proposals is None and "sam-review" not in update["stage"]
    assert update["proposal_panel"]["visible"] is False
    assert [doc.label_name(o) for o in doc.objects] == ["vehicle"] * 3
    assert doc.label("vehicle") is not None, "a new label name becomes a label"
    for obj, p in zip(doc.objects, chosen, strict=True):
        np.testing.assert_array_equal(obj.mask.to_array(), p.mask.to_array())
        assert obj.score == pytest.approx(p.mask_score) and obj.source == "everything"
        assert obj.prompt == p.prompt  # re-editing starts from the grid point
    assert update["objects"].count('class="sam-obj"') == 3

    handlers.on_undo(reviewing)
    assert reviewing.doc.objects == () and reviewing.doc.proposals is not None
    assert [p.accepted for p in reviewing.doc.proposals.items][:4] == [True, False, True, True]
    handlers.on_redo(reviewing)
    assert len(reviewing.doc.objects) == 3 and reviewing.doc.proposals is None

    # ✎ re-edits such an object with clicks like any other.
    handlers.object_action(reviewing, reviewing.doc.objects[0].id, "edit")
    assert reviewing.doc.editing == reviewing.doc.objects[0].id


def test_enter_adds_and_esc_discards(handlers: Handlers, reviewing: Session):
    handlers.on_accept(reviewing, None)  # nothing accepted yet
    assert reviewing.message_is_error and "No proposal is accepted yet" in reviewing.message
    handlers.on_proposal(reviewing, _Evt({"index": 1}))
    handlers.on_accept(reviewing, None)  # Enter: the active label
    assert [reviewing.doc.label_name(o) for o in reviewing.doc.objects] == [reviewing.active_label]
    everything(handlers, reviewing)
    n = len(reviewing.doc.proposals.items)
    handlers.on_clear(reviewing)  # Esc
    assert reviewing.doc.proposals is None and len(reviewing.doc.objects) == 1
    assert f"Discarded {n}" in reviewing.message
    handlers.on_undo(reviewing)
    assert len(reviewing.doc.proposals.items) == n
    handlers.on_discard(reviewing)
    assert reviewing.doc.proposals is None
    # Clicks are SAM points again.
    handlers.prompt(reviewing, {"kind": "point", "x": 150, "y": 100})
    assert reviewing.doc.candidates is not None and len(reviewing.doc.prompt.points) == 1


def test_opening_another_image_drops_proposals(handlers, reviewing: Session, truck_path: Path):
    list(handlers.on_upload(reviewing, str(truck_path)))
    assert reviewing.doc.proposals is None


def test_proposals_for_a_replaced_image_are_not_shown(handlers, reviewing: Session):
    stale = reviewing.doc.proposals
    assert not proposals.show(reviewing, stale, "another-image-key")
    assert reviewing.message_is_error


def test_project_saves_accepted_proposals(tmp_path: Path, small_image: Path, tiny_checkpoint: Path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / small_image.name).write_bytes(small_image.read_bytes())
    project = Project(folder)
    manager = ModelManager(
        str(tiny_checkpoint), device="cpu", embeddings_dir=project.embeddings_dir
    )
    h = Handlers(manager, tmp_path / "media", tmp_path / "export", [], project)
    try:
        session = Session()
        h.on_load(session)
        list(h.on_resume(session))
        everything(h, session)
        h.on_accept_above(session, 0.0)
        n = len(session.doc.proposals.items)
        update = h.on_add_accepted(session, "thing")
        image_id = session.link.image_id
        stored = project.store.objects(image_id)
        assert len(stored) == n and "gallery" in update
        names = {lab.id: lab.name for lab in project.store.labels()}
        assert {names[o.label_id] for o in stored} == {"thing"}
        assert {o.source for o in stored} == {"everything"}
        h.on_undo(session)
        assert not session.message_is_error, session.message
        assert project.store.objects(image_id) == []
    finally:
        project.close()


# -- text prompts ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_grounding_dino(tmp_path_factory.mktemp("grounding-dino"))


@pytest.fixture
def text_handlers(manager: ModelManager, detector_dir: Path, tmp_path: Path) -> Handlers:
    detectors = TextDetectors(str(detector_dir), device="cpu")
    return Handlers(manager, tmp_path / "media", tmp_path / "export", [], None, detectors)


def test_text_proposals_carry_their_phrases(
    text_handlers: Handlers, small_image: Path, detector_dir: Path, tiny_checkpoint: Path
):
    session = Session()
    list(text_handlers.on_upload(session, str(small_image)))
    updates = list(text_handlers.on_find(session, "Truck, wheel", *LOOSE_TEXT.values()))
    assert "Loading the text detector" in updates[0]["stage"]
    props = session.doc.proposals
    assert props is not None, session.message
    assert props.source == "text" and props.query == "truck. wheel."
    assert updates[-1]["prop_label"]["value"] == proposals.PHRASE
    assert updates[-1]["find_note"] == ""

    image = session.doc.image.array
    predictor = SamPredictor(load_model(str(tiny_checkpoint), device="cpu"))
    expected = segment_by_text(
        predictor,
        GroundingDetector(str(detector_dir), device="cpu"),
        image,
        "truck. wheel.",
        TextPromptConfig(**LOOSE_TEXT),
    )
    assert len(props.items) == len(expected) >= 2
    for got, want in zip(props.items, expected, strict=True):
        assert got.phrase == proposals.clean_phrase(want.detection.phrase, "truck. wheel.")
        assert got.phrase in ("truck", "wheel", "truck wheel"), got.phrase
        assert got.score == pytest.approx(want.detection.score)
        assert (got.mask.to_array() == want.mask).mean() > 0.9999
        assert got.prompt.box is not None
        assert f"{got.phrase}" in updates[-1]["proposals"]

    # Accepted with "each its phrase": labels named by the phrases, created when missing.
    text_handlers.on_accept_above(session, 0.0)
    text_handlers.on_add_accepted(session, proposals.PHRASE)
    doc = session.doc
    assert [doc.label_name(o) for o in doc.objects] == [p.phrase for p in props.items]
    assert all(doc.label(p.phrase) is not None for p in props.items)
    assert {o.source for o in doc.objects} == {"text"}

    # A second Find reuses the loaded detector.
    updates = list(text_handlers.on_find(session, "wheel", *LOOSE_TEXT.values()))
    assert "Finding “wheel.”" in updates[0]["stage"]


def test_find_needs_words(text_handlers: Handlers, session: Session):
    list(text_handlers.on_find(session, " . ", *LOOSE_TEXT.values()))
    assert session.message_is_error and "Type what to find" in session.message


def test_without_the_text_extra_the_page_says_so(handlers: Handlers, session: Session, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import raises ImportError
    updates = list(handlers.on_find(session, "dog. cat.", *LOOSE_TEXT.values()))
    assert session.message_is_error and "pip install '.[text]'" in session.message
    assert "pip install" in updates[-1]["find_note"]
    assert "pip install" in handlers.find_note()["find_note"]  # also on page load
    assert "sam-busy" not in updates[-1]["stage"]
    # The rest of the app keeps working.
    handlers.prompt(session, {"kind": "point", "x": 150, "y": 100})
    assert session.doc.candidates is not None and not session.message_is_error
    everything(handlers, session)


def test_a_detector_that_cannot_be_loaded(manager: ModelManager, session: Session, tmp_path):
    detectors = TextDetectors(str(tmp_path / "no-such-detector"), device="cpu")
    h = Handlers(manager, tmp_path / "media", tmp_path / "export", [], None, detectors)
    updates = list(h.on_find(session, "dog", *LOOSE_TEXT.values()))
    assert session.message_is_error and "no-such-detector does not exist" in session.message
    assert "Find objects is unavailable" in updates[-1]["find_note"]
    assert "could not be loaded" in updates[-1]["find_note"]
    assert session.doc.proposals is None


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [("dog", "dog"), ("dog. [SEP]", "dog"), ("[CLS] hot  dog.", "hot dog"), ("[SEP] .", "cat")],
)
def test_clean_phrase(phrase: str, expected: str):
    assert proposals.clean_phrase(phrase, "cat. dog.") == expected


def test_proposal_overlay_equals_painting_each_in_turn():
    """The fast index-map drawing gives exactly the painter's algorithm: largest first, each
    proposal's fill covering what lies below, its contour on top."""
    from ui import render

    h, w = 90, 120
    yy, xx = np.mgrid[:h, :w]
    rng = np.random.default_rng(1)
    masks = [
        (xx - rng.uniform(0, w)) ** 2 + (yy - rng.uniform(0, h)) ** 2 < rng.uniform(5, 50) ** 2
        for _ in range(12)
    ]
    colors = proposals.distinct_colors(len(masks))
    items = tuple(
        Proposal(Mask.from_array(m), 0.9, 0.9, c, accepted=i % 3 == 0)
        for i, (m, c) in enumerate(zip(masks, colors, strict=True))
    )
    grid = render.sample_grid(h, w, h, w)
    palette = render.Palette()
    fast = np.zeros((h, w), np.uint16)
    render.overlay._paint_proposals(fast, Proposals(items, "everything"), grid, 128, palette)
    slow = np.zeros((h, w), np.uint16)
    for p in sorted(items, key=lambda p: -p.mask.area):
        rgb = render.hex_to_rgb(p.color)
        if p.accepted:
            fill, line = palette(rgb, 150), palette(render.CURRENT_OUTLINE, 255)
            render.overlay._paint(slow, p.mask, grid, fill, line, 3)
        else:
            render.overlay._paint(slow, p.mask, grid, palette(rgb, 70), palette(rgb, 255), 2)
    assert len(np.unique(fast)) > 12  # every proposal shows, fill and contour
    np.testing.assert_array_equal(palette.rgba()[fast], palette.rgba()[slow])
