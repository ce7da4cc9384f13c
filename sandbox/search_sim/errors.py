"""How a simulated node refuses a request, inside the package: each becomes the answer
(or the cut connection) the real servers give."""

from __future__ import annotations

from typing import Any


class IndexNotFound(Exception):
    """An index name that the simulated cluster does not hold."""

    def __init__(self, index: str) -> None:
        super().__init__(index)
        self.index = index


class ApiError(Exception):
    """A refusal in the real error envelope: its status, type and reason, plus the extra
    fields (index, index_uuid, ...) the real server adds to the cause."""

    def __init__(
        self,
        status: int,
        err_type: str,
        reason: str | None,
        *,
        root_cause: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.err_type = err_type
        self.reason = reason
        self.root_cause = root_cause
        self.extra = extra


class BadRequest(ApiError):
    """A request ES would reject with 400; carries the ES error type and reason."""

    def __init__(self, err_type: str, reason: str, **extra: Any) -> None:
        super().__init__(400, err_type, reason, **extra)


class Dropped(Exception):
    """The node died while answering: cut the connection instead of replying."""
