"""The one event wrapper of the page's handlers (``ui/events.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio.helpers import special_args
from project_app import add_object, make_handlers, start

from sam.errors import PromptError, SamError
from ui import actions, proposals
from ui.errors import LabelError, MaskImportError, ObjectError, ProposalError
from ui.handlers import Handlers
from ui.state import Session

# Handlers of custom events from the page's JS: Gradio must pass them the event.
PAYLOAD_HANDLERS = {
    "on_prompt", "on_pick", "on_choose_label", "on_object", "on_proposal", "on_dropped",
    "on_gallery",
}  # fmt: skip


@pytest.fixture
def app(folder: Path, tiny_checkpoint: Path, tmp_path: Path):
    """The app over ``folder`` as a project."""
    h = make_handlers(folder, tiny_checkpoint, tmp_path)
    yield h
    h.project.close()


def test_gradio_passes_the_event_to_every_payload_handler(app, tmp_path: Path):
    from ui.layout import build_demo

    demo = build_demo(app.manager, media_dir=tmp_path / "media", examples=[], project=app.project)
    wired = {fn.name: fn.fn for fn in demo.fns.values() if fn.name in PAYLOAD_HANDLERS}
    assert set(wired) == PAYLOAD_HANDLERS
    for name, fn in wired.items():
        event_index = special_args(fn)[2]
        assert event_index is not None, name


def test_an_object_click_writes_the_store_once(app: Handlers, monkeypatch: pytest.MonkeyPatch):
    s, _ = start(app)
    add_object(app, s, 300, 200)
    syncs: list[int] = []
    sync = app.project.sync
    monkeypatch.setattr(app.project, "sync", lambda session: syncs.append(1) or sync(session))
    app.on_object(s, _Evt({"id": 1, "action": "hide"}))
    assert s.doc.objects[0].hidden
    assert len(syncs) == 1


def test_a_failure_in_a_long_task_becomes_a_message(handlers: Handlers, opened: Session):
    """A generator handler's unexpected error shows in the page instead of reaching Gradio."""
    updates = list(handlers.on_find(opened, "dog", None))  # type: ignore[arg-type]
    assert opened.message_is_error and "Something went wrong" in opened.message
    assert "Something went wrong" in updates[-1]["message"]


def test_an_event_without_data_is_an_empty_payload(handlers: Handlers):
    session = Session()
    handlers.on_object(session, _Evt(None))
    assert not session.message_is_error, session.message


class _Evt:
    def __init__(self, data: dict | None) -> None:
        self._data = data


def test_label_object_import_and_export_failures_have_their_own_kinds(
    handlers: Handlers, opened: Session
):
    """Each kind is a SamError the page shows as is, and none of them claims to be a prompt's."""
    with pytest.raises(LabelError, match="Type a name"):
        actions.add_label(opened, "  ")
    with pytest.raises(ObjectError, match="does not exist"):
        actions.toggle_hidden(opened, 99)
    with pytest.raises(MaskImportError, match="Open an image first"):
        actions.add_objects(Session(), [], "import")
    with pytest.raises(ProposalError, match="No proposals on show"):
        proposals.discard(opened)
    for kind in (LabelError, ObjectError, MaskImportError, ProposalError):
        assert issubclass(kind, SamError) and not issubclass(kind, PromptError)
    handlers.on_export_project(opened, "coco")  # no project: an export error, in the page
    assert opened.message_is_error and "needs a folder" in opened.message


def test_the_event_wrapper_imports_no_handlers():
    """``ui/events.py`` knows the handlers only by the small ``Page`` protocol: no cycle."""
    import ast

    import ui.events

    tree = ast.parse(Path(ui.events.__file__).read_text(encoding="utf-8"))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert imported and not [m for m in imported if "handlers" in m]


def test_every_output_a_handler_names_is_on_the_page(manager, tmp_path: Path):
    """A page without a project has no encoding line: the tick must not name it."""
    from ui.layout import build_demo

    demo = build_demo(manager, media_dir=tmp_path / "media", examples=[])
    tick = next(fn.fn for fn in demo.fns.values() if fn.name == "on_tick")
    shown = tick(Session())
    assert {getattr(c, "elem_id", None) for c in shown} >= {"sam-model-status"}


def test_an_output_name_with_a_typo_raises_with_that_name(
    manager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from ui.layout import build_demo

    def on_tick(self: Handlers, session: Session) -> dict[str, str]:
        return {"stge": "<p>hi</p>"}

    monkeypatch.setattr(Handlers, "on_tick", on_tick)
    demo = build_demo(manager, media_dir=tmp_path / "media", examples=[])
    tick = next(fn.fn for fn in demo.fns.values() if fn.name == "on_tick")
    with pytest.raises(LookupError, match="No page output named 'stge'"):
        tick(Session())
