"""Errors a user can act on.

Library code raises :class:`UserError` when an input is wrong: an argument, a missing or
unreadable file, a data folder of the wrong layout, a corrupt stored result. The command line
(``cxrlib.cli``) prints it as one line, ``error: <what is wrong> — <what to do>``, and exits with
status 2 (argparse's convention for a usage error); ``--debug`` or ``CXRLIB_DEBUG=1`` shows the
traceback instead. Anything else that escapes is a bug in cxrlib and keeps its traceback.
"""
from __future__ import annotations

from pathlib import Path

EXIT_USAGE = 2


class UserError(ValueError):
    """Something the user can fix. ``what`` names the file or value, ``fix`` says what to do."""

    def __init__(self, what: str, fix: str = ""):
        self.what = what
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        return f"{self.what} — {self.fix}" if self.fix else self.what


class CorruptResult(UserError):
    """A stored result that cannot be read (half-written, truncated, not JSON)."""

    def __init__(self, path: Path | str, why: str, fix: str = ""):
        self.path = Path(path)
        super().__init__(f"{path}: {why}",
                         fix or "retrain it with `python -m cxrlib run ... --retrain-corrupt`, "
                                "or delete that folder")
