"""Labels (choose, add, rename, remove) and the object list (select, hide, re-edit, delete,
relabel, recolour)."""

from __future__ import annotations

from .. import actions
from ..events import Payload, Updates, event
from ..state import Session
from .base import HandlerBase


class ObjectHandlers(HandlerBase):
    """The Labels and Objects panels."""

    @event
    def on_choose_label(self, session: Session, payload: Payload) -> Updates:
        # By id, not position: another tab's label changes may have reordered the list
        # since the page drew it.
        chosen = payload.get("id")
        if any(lab.id == chosen for lab in session.doc.labels):
            actions.choose_label(session, chosen)
        return {**self.view(session), **self.label_fields(session), **self.object_fields(session)}

    @event
    def on_add_label(self, session: Session, name: str, color: str) -> Updates:
        actions.add_label(session, name or "", color)
        return {**self.view(session), **self.label_fields(session), **self.object_fields(session)}

    @event
    def on_save_label(self, session: Session, name: str, color: str) -> Updates:
        actions.update_label(session, session.active_label_id, name or "", color)
        return {**self.view(session), **self.label_fields(session), **self.object_fields(session)}

    @event
    def on_remove_label(self, session: Session) -> Updates:
        if self.project is not None and session.link is not None:
            self.project.check_label_removable(session.active_label_id)
        actions.remove_label(session, session.active_label_id)
        return {**self.view(session), **self.label_fields(session), **self.object_fields(session)}

    @event
    def on_object(self, session: Session, payload: Payload) -> Updates:
        """A row's click or button in the object list: ``{id, action}``."""
        obj_id, action = int(payload.get("id", -1)), str(payload.get("action", ""))
        return self._object_action(session, obj_id, action)

    @event
    def object_action(self, session: Session, obj_id: int, action: str) -> Updates:
        """``action`` (select, hide, edit, delete) on object ``obj_id``."""
        return self._object_action(session, obj_id, action)

    def _object_action(self, session: Session, obj_id: int, action: str) -> Updates:
        if action == "select":
            same = session.selected_object == obj_id
            actions.select_object(session, None if same else obj_id)
        elif action == "hide":
            actions.toggle_hidden(session, obj_id)
        elif action == "edit":
            actions.edit_object(session, obj_id)
        elif action == "delete":
            actions.delete_object(session, obj_id)
        return {**self.view(session), **self.object_fields(session)}

    @event
    def on_object_label(self, session: Session, name: str | None) -> Updates:
        if session.selected_object is not None and name:
            actions.relabel_object(session, session.selected_object, name)
        return {**self.view(session), **self.object_fields(session)}

    @event
    def on_object_color(self, session: Session, color: str | None) -> Updates:
        if session.selected_object is not None and color:
            actions.recolor_object(session, session.selected_object, color)
        return self.view(session)
