"""The one domain error. Views turn it into a form error or message; the API into its envelope."""

from typing import Any


class ApplicationError(Exception):
    def __init__(
        self, message: str, *, field: str | None = None, extra: dict[str, Any] | None = None
    ):
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra or {}
