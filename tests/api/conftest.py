import pytest
from django.test import Client

from organizations import apikeys
from portal.models import ApiScope

ALL_SCOPES = list(ApiScope.values)


class ApiClient:
    """The Django test client with a Bearer key and JSON bodies."""

    def __init__(self, key: str | None):
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def _call(self, method: str, path: str, body=None, headers=None, **query):
        kwargs = {"headers": {**self.headers, **(headers or {})}}
        if body is not None:
            kwargs["data"] = body
            kwargs["content_type"] = "application/json"
        elif query:
            kwargs["data"] = query
        return getattr(self.client, method)(f"/api/v1{path}", **kwargs)

    def get(self, path, **query):
        return self._call("get", path, **query)

    def post(self, path, body=None, headers=None):
        return self._call("post", path, body if body is not None else {}, headers)

    def patch(self, path, body=None):
        return self._call("patch", path, body or {})

    def delete(self, path):
        return self._call("delete", path)


def make_key(org, scopes=None):
    return apikeys.api_key_create(
        org=org, name="test", scopes=scopes or ALL_SCOPES, created_by=None
    ).key


@pytest.fixture
def api(org):
    return ApiClient(make_key(org))


@pytest.fixture
def other_api(other_org):
    return ApiClient(make_key(other_org))
