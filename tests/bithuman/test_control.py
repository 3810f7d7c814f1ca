"""portal.bithuman.control: ending a sandbox room (Test mode sessions)."""

import httpx
import pytest
import respx

from portal.bithuman import control

BASE_URL = "https://sandbox.test/sandbox"
SECRET = "sk_test_Zq8TvErYsEcReTvAlUe_9f2c"


@pytest.fixture
def sandbox():
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        yield router


def end(room: str = "room one/2") -> bool:
    return control.sandbox_room_end(base_url=BASE_URL + "/", api_secret=SECRET, room_name=room)


def test_a_room_is_ended_with_the_accounts_secret(sandbox):
    route = sandbox.post("/control/rooms/room%20one%2F2/end").mock(httpx.Response(200, json={}))

    assert end() is True

    [call] = route.calls
    assert call.request.headers["api-secret"] == SECRET
    assert call.request.url.raw_path == b"/sandbox/control/rooms/room%20one%2F2/end"


def test_a_room_already_ended_answers_false(sandbox):
    sandbox.post(path__regex=r"/end$").mock(httpx.Response(404))

    assert end() is False


def test_a_refusal_or_no_answer_is_a_control_error_without_the_secret(sandbox):
    sandbox.post(path__regex=r"/end$").mock(httpx.Response(500, text=SECRET))
    with pytest.raises(control.ControlError) as refused:
        end("r1")
    assert refused.value.message == "The sandbox did not close room r1 (HTTP 500)"

    sandbox.post(path__regex=r"/end$").mock(side_effect=httpx.ConnectError("down"))
    with pytest.raises(control.ControlError) as unreachable:
        end("r1")
    assert unreachable.value.message == "The sandbox did not close room r1 (ConnectError)"
    assert SECRET not in str(unreachable.value)
