"""``@_safe``: handlers never raise into Gradio; a failure becomes a message in the page."""

from __future__ import annotations

import functools
import logging
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
        except Exception as exc:
            logger.exception("Handler %s failed", fn.__name__)
            session.notify(
                f"Something went wrong ({type(exc).__name__}: {exc}). Your work is kept; see the "
                "server log for details.",
                error=True,
            )
        return self.view(session)

    return wrapper
