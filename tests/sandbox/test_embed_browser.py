"""The hosted embed page in a real Chromium: it keeps a live room while open, shows what speak
delivers as a caption and lists context notes; once closed, its room lapses."""

import os
import time

import pytest
from playwright.sync_api import Page, expect

# Playwright's sync API runs an event loop in this thread; the test's own ORM calls are sync.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_embed_page_shows_captions_and_its_room_lapses_when_closed(
    sandbox_client, page: Page, settings
):
    settings.SANDBOX_ROOM_TTL = 1.5
    settings.SANDBOX_EMBED_POLL_MS = 250
    client = sandbox_client(plan="free")
    agent_id = client.ready_agent()
    token = client.post(
        "/v1/embed-tokens/request", json={"agent_id": agent_id, "fingerprint": "a1b2c3d4e5f6"}
    ).json()["data"]["token"]
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    page.goto(f"{client.base_url}/sandbox/embed/{agent_id}?token={token}")
    expect(page.locator("#room-status")).to_contain_text("Live · room embed-")
    face = page.locator("#face")
    expect(face).to_be_visible()
    assert face.evaluate("img => img.complete && img.naturalWidth > 0")  # the generated face

    response = client.post(f"/v1/agent/{agent_id}/speak", json={"message": "Hello from the test"})
    assert response.json()["delivered_to_rooms"] == 1
    expect(page.locator("#caption")).to_have_text("Hello from the test")
    client.post(f"/v1/agent/{agent_id}/add-context", json={"context": "The visitor is Ada"})
    expect(page.locator("#context-notes li")).to_have_text(["The visitor is Ada"])
    client.post(f"/v1/agent/{agent_id}/speak", json={"message": "Second line"})
    expect(page.locator("#caption")).to_have_text("Second line")
    expect(page.locator("#transcript li")).to_have_text(["Hello from the test", "Second line"])
    assert problems == []

    page.close()
    deadline = time.monotonic() + 10
    while True:
        response = client.post(f"/v1/agent/{agent_id}/speak", json={"message": "Still there?"})
        if response.status_code == 404 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"No active rooms found for agent {agent_id}"
