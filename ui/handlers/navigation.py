"""A project's navigation: resume, gallery, next / previous, status filter, Mark done."""

from __future__ import annotations

from collections.abc import Iterator

from sam.errors import SamError

from ..events import Payload, Updates, event
from ..project import FILTERS
from ..state import Session
from .base import HandlerBase


class NavigationHandlers(HandlerBase):
    """Moving through a project's images (nothing happens without a project)."""

    @event
    def on_resume(self, session: Session) -> Iterator[Updates]:
        """After the page loads, a project tab opens the first image not done yet."""
        if self.project is None or session.link is not None:
            return
        start = self.project.first_image()
        if start is None:
            session.notify(f"The folder {self.project.name} has no images.", error=True)
            yield self.view(session)
            return
        yield from self.open_project_image(session, start)

    def open_project_image(self, session: Session, image_id: int) -> Iterator[Updates]:
        """Show a project image with its stored objects at once, then encode it (a prefetched
        image comes from memory or disk and runs no encoder)."""
        assert self.project is not None
        try:
            self.persist(session)
            self.project.open(session, image_id, self.media_dir)
        except SamError as exc:
            session.notify(str(exc), error=True)
            yield {**self.view(session), **self.project_view(session)}
            return
        for updates in self._encode(session):
            yield {**updates, **self.label_fields(session), **self.project_view(session)}
        yield self.tick_view(session)

    @event
    def on_gallery(self, session: Session, payload: Payload) -> Iterator[Updates]:
        yield from self.open_project_image(session, int(payload.get("id", -1)))

    def _step(self, session: Session, forward: bool) -> Iterator[Updates]:
        """Next (or previous) image in the gallery's order, within the status filter."""
        if self.project is None:
            yield self.view(session)
            return
        current = session.link.image_id if session.link else None
        near = self.project.neighbours(current, session.gallery_filter)
        target = near.next if forward else near.previous
        if target is None:
            session.notify(f"This is the {'last' if forward else 'first'} image of the list.")
            yield self.view(session)
            return
        yield from self.open_project_image(session, target)

    @event
    def on_next(self, session: Session) -> Iterator[Updates]:
        yield from self._step(session, forward=True)

    @event
    def on_prev(self, session: Session) -> Iterator[Updates]:
        yield from self._step(session, forward=False)

    @event
    def on_filter(self, session: Session, choice: str | None) -> Updates:
        session.gallery_filter = choice if choice in FILTERS else "all"
        return self.project_view(session)

    @event
    def on_done_next(self, session: Session) -> Iterator[Updates]:
        """Mark the current image done and open the next one not done yet."""
        if self.project is None or session.link is None:
            yield self.view(session)
            return
        self.project.set_status(session, "done")
        target = self.project.next_not_done(session.link.image_id)
        if target is None:
            session.notify(f"Marked done. Every image of {self.project.name} is done.")
            yield {**self.view(session), **self.project_view(session)}
            return
        yield from self.open_project_image(session, target)

    @event
    def on_done(self, session: Session) -> Updates:
        """Mark the current image done, or reopen it when it already is."""
        assert self.project is not None
        done = self.project.status_of(session) == "done"
        self.project.set_status(session, "in_progress" if done else "done")
        session.notify("Reopened the image." if done else "Marked done. Next image: . or PageDown.")
        return {**self.view(session), **self.project_view(session)}
