"""How a simulated node refuses a request, inside the package: each becomes the answer
(or the cut connection) the real servers give."""

from __future__ import annotations


class IndexNotFound(Exception):
    """An index name that the simulated cluster does not hold."""

    def __init__(self, index: str) -> None:
        super().__init__(index)
        self.index = index


class BadRequest(Exception):
    """A request ES would reject with 400; carries the ES error type and reason."""

    def __init__(self, err_type: str, reason: str) -> None:
        super().__init__(reason)
        self.err_type = err_type
        self.reason = reason


class Dropped(Exception):
    """The node died while answering: cut the connection instead of replying."""
