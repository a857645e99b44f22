"""Page load, the model's status and the Model picker."""

from __future__ import annotations

from collections.abc import Iterator

from .. import actions
from ..events import Updates, event
from ..models import MODEL_CHOICES
from ..state import Session
from .base import HandlerBase


class ModelHandlers(HandlerBase):
    """Page load, the model's status poll and the Model picker."""

    @event
    def on_load(self, session: Session) -> Updates:
        if not self.manager.is_loading(session.model_source):
            self.manager.load(session.model_source)
        return {
            **self.everything(session),
            **self.project_view(session),
            **self.tick_view(session),
            **self.find_note(),
            **self.family_settings(session),
        }

    @event(persist=False)
    def on_tick(self, session: Session) -> Updates:
        """Poll the model loading and the background encoding; stop polling when both rest."""
        return {**self.tick_view(session), **self.family_settings(session)}

    @event
    def on_model_change(
        self, session: Session, choice: str | None, *shown: float
    ) -> Iterator[Updates]:
        """Load the model picked or typed; ``shown``: the Segment everything settings the page
        shows (:data:`FAMILY_SETTINGS` order), moved to the new family's defaults unless the
        user changed them."""
        typed = (choice or "").strip()
        typed = dict((label, value) for label, value in MODEL_CHOICES).get(typed, typed)
        if not typed:
            session.notify("Pick a model or type a hub repo id / local path.", error=True)
            yield self.view(session)
            return
        # Typed paths load only from allowed places (ui/models.py); a refusal is one message,
        # whatever was typed (no echo of server paths).
        source = self.manager.page_source(typed)
        name = self.manager.name(source)
        session.notify(f"Loading {name}… (the first use downloads it)")
        yield self.view(session, busy=f"Loading model {name}…")
        status = self.manager.load(source, retry=True)
        if status.ok:
            session.model_source = source
            actions.clear_prompt(session)
            session.notify(
                f"Using {name} ({status.family}) on {status.device} "
                f"(loaded in {status.seconds:.1f} s)."
            )
        else:
            session.notify(f"Could not load {name}: {status.message}", error=True)
        yield {**self.view(session), **self.family_settings(session, shown or None)}
