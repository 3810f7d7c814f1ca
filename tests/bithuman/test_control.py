"""portal.bithuman.control: the sandbox's stand-in LiveKit project (Test mode sessions)."""

import httpx
import pytest
import respx

from portal.bithuman import control

BASE_URL = "https://sandbox.test/sandbox"
SECRET = "sk_test_Zq8TvErYsEcReTvAlUe_9f2c"
PROJECT = {
    "url": "https://sandbox.test/sandbox/livekit",
    "api_key": "sbxlk_1",
    "api_secret": "lk-secret-0123456789",
    "room_link_template": "https://sandbox.test/sandbox/livekit/meet?liveKitUrl={url}&token={token}",
}


@pytest.fixture
def sandbox():
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        yield router


def project() -> control.LiveKitProject:
    return control.sandbox_livekit_project(base_url=BASE_URL + "/", api_secret=SECRET)


def test_the_project_is_asked_for_with_the_accounts_secret(sandbox):
    route = sandbox.get("/control/livekit").mock(httpx.Response(200, json=PROJECT))

    found = project()

    assert (found.url, found.api_key, found.api_secret) == (
        PROJECT["url"],
        "sbxlk_1",
        "lk-secret-0123456789",
    )
    assert "lk-secret" not in repr(found)
    [call] = route.calls
    assert call.request.headers["api-secret"] == SECRET


def test_a_refusal_or_no_answer_is_a_control_error_without_the_secret(sandbox):
    sandbox.get("/control/livekit").mock(httpx.Response(500, text=SECRET))
    with pytest.raises(control.ControlError) as refused:
        project()
    assert refused.value.message == "The sandbox's LiveKit project is not available (HTTP 500)"

    sandbox.get("/control/livekit").mock(httpx.Response(200, json={"url": "x"}))
    with pytest.raises(control.ControlError, match="unreadably"):
        project()

    sandbox.get("/control/livekit").mock(side_effect=httpx.ConnectError("down"))
    with pytest.raises(control.ControlError) as unreachable:
        project()
    assert "(ConnectError)" in unreachable.value.message
    assert SECRET not in str(unreachable.value)
