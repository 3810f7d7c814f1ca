"""Fixtures for the bitHuman client tests: a mocked API (respx) and clients that never sleep."""

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from portal.bithuman import BithumanClient

BASE_URL = "https://api.bithuman.test"
SECRET = "sk_live_Zq8TvErYsEcReTvAlUe_9f2c"


def envelope(http_status: int, code: str, message: str, **kwargs: Any) -> httpx.Response:
    """An error answer exactly as bitHuman shapes it."""
    body = {
        "error": {"code": code, "message": message, "httpStatus": http_status},
        "status": "error",
        "status_code": http_status,
    }
    return httpx.Response(http_status, json=body, **kwargs)


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        yield router


@pytest.fixture
def sleeps() -> list[float]:
    """Every delay the client asked to sleep, instead of sleeping."""
    return []


@pytest.fixture
def make_client(sleeps: list[float]) -> Iterator[Callable[..., BithumanClient]]:
    clients: list[BithumanClient] = []

    def client_make(**overrides: Any) -> BithumanClient:
        options: dict[str, Any] = {
            "base_url": BASE_URL,
            "api_secret": SECRET,
            "timeout": 5.0,
            "max_retries": 3,
            "sleep": sleeps.append,
        }
        client = BithumanClient(**(options | overrides))
        clients.append(client)
        return client

    yield client_make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., BithumanClient]) -> BithumanClient:
    return make_client()
