"""``@_safe``: handlers never raise into Gradio; a failure becomes a message in the page."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sam.errors import SamError

from .state import Session

if TYPE_CHECKING:
    from .handlers import Handlers

logger = logging.getLogger("ui.handlers")

Updates = dict[str, Any]


def _safe(fn: Callable[..., Updates]) -> Callable[..., Updates]:
    """Turn any failure into a message in the page; the session stays as it was.

    In a project, whatever the action changed is written to the store before the page updates.
    """

    @functools.wraps(fn)
    def wrapper(self: Handlers, session: Session | None, *args: Any, **kwargs: Any) -> Updates:
        session = session if isinstance(session, Session) else Session()
        try:
            updates = fn(self, session, *args, **kwargs)
            return {**updates, **self.persist(session)}
        except SamError as exc:
            session.notify(str(exc), error=True)
        except Exception:
            session.notify(unexpected_failure(f"Handler {fn.__name__}"), error=True)
        return self.view(session)

    return wrapper


def unexpected_failure(what: str) -> str:
    """Log the exception being handled under a short id and return the message for the user.

    Call it inside an ``except`` block. The exception's text can hold server paths and Python
    internals, so only the log gets it; the id lets an operator find the entry.
    """
    error_id = uuid.uuid4().hex[:8]
    logger.exception("%s failed [error %s]", what, error_id)
    return (
        f"Something went wrong; your work is kept. The server log has the details "
        f"(error {error_id})."
    )
