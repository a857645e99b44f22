"""Messages for a remote page: no absolute server paths in them.

Errors from the engine name files by their full path (useful on the command line); a page
served to other machines must not reveal the server's folders, so every message it shows
passes :func:`without_paths`.
"""

from __future__ import annotations

import re

# An absolute POSIX or Windows path, up to a space or quote, without trailing punctuation.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/\\-])(?:/|[A-Za-z]:\\)[^\s'\"]*[^\s'\".,;:)/\\]")


def without_paths(text: str) -> str:
    """``text`` with every absolute path replaced by its last part (a file or folder name)."""
    return _ABSOLUTE_PATH.sub(lambda m: re.split(r"[/\\]", m.group())[-1], text)
