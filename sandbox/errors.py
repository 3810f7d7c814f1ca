"""The sandbox's one error type; `http.api_endpoint` turns it into bitHuman's error envelope.

Its own base, not the portal's domain error: portal code that catches its own errors must never
catch (and so hide) an error of the simulator it is tested against.
"""

from __future__ import annotations


class SandboxError(Exception):
    """An answer in bitHuman's error envelope: HTTP `status` with error `code` and `message`."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.headers = headers or {}


def agent_not_found(code: str) -> SandboxError:
    return SandboxError(404, "NOT_FOUND", f"Agent not found for code: {code}")


def no_active_rooms(code: str) -> SandboxError:
    return SandboxError(404, "NOT_FOUND", f"No active rooms found for agent {code}")


def missing_param(name: str) -> SandboxError:
    return SandboxError(400, "MISSING_PARAM", f"Missing required field: {name}")


def invalid(message: str) -> SandboxError:
    return SandboxError(400, "VALIDATION_ERROR", message)
