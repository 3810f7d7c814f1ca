"""The synchronous bitHuman client, for services and Celery tasks: the only code that speaks HTTP
to bitHuman (with async_client.py, aio.py and control.py).

Each method is one `_Call` (core.py) sent by `_send`, which retries as `_ClientCore` decides.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import Self

import httpx
from django.views.decorators.debug import sensitive_variables

from portal.bithuman.core import (
    DEFAULT_MAX_TOTAL_SLEEP_SECONDS,
    _agent_generate_call,
    _agent_page_parse,
    _agent_status_call,
    _body,
    _Call,
    _ClientCore,
    _ClientFace,
    _data_object,
    _object,
    _segment,
    _usage_page_parse,
    _validate_call,
    _webhooks_parse,
)
from portal.bithuman.errors import (
    AuthenticationError,
)
from portal.bithuman.types import (
    Account,
    AddableModel,
    Agent,
    AgentDeleted,
    AgentPage,
    AgentStatus,
    AspectRatio,
    ContextDelivery,
    ContextType,
    CreditSummary,
    EmbedToken,
    FileType,
    FileUploaded,
    Framing,
    GenerateModel,
    GenerateVersion,
    GenerationStarted,
    ModelAdded,
    ModelDownload,
    Pricing,
    PromptUpdated,
    RevokeAll,
    RuntimeSessionKind,
    RuntimeSessionPage,
    RuntimeSessionTerminated,
    RuntimeSessionWindow,
    RuntimeToken,
    Transcript,
    UsagePage,
    Webhook,
    WebhookDeleted,
    WebhookEvent,
    WebhookWithSecret,
)

# A voice sample may be 50 MB (67 MB base64-encoded): more than BITHUMAN_TIMEOUT allows.
UPLOAD_TIMEOUT_SECONDS = 120.0

# --- Synchronous client -------------------------------------------------------------------------


class BithumanClient(_ClientFace):
    """bitHuman's REST API for one API secret, over a pooled httpx.Client.

    Use as a context manager (or call `close()`): `with BithumanClient(...) as client: ...`.
    Every method raises a `BithumanError` subclass on failure.
    """

    @sensitive_variables("api_secret")
    def __init__(
        self,
        *,
        base_url: str,
        api_secret: str,
        timeout: float | None = None,
        max_retries: int | None = None,
        transport: httpx.BaseTransport | None = None,
        max_total_sleep: float = DEFAULT_MAX_TOTAL_SLEEP_SECONDS,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._core = _ClientCore(
            base_url=base_url,
            api_secret=api_secret,
            timeout=timeout,
            max_retries=max_retries,
            max_total_sleep=max_total_sleep,
        )
        self._sleep = sleep or time.sleep
        self._http = httpx.Client(transport=transport, **self._core.http_options())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send[T](self, call: _Call[T]) -> T:
        """Drive `_ClientCore.exchange` (every decision is there) with blocking I/O."""
        steps = self._core.exchange(self._http, call)
        outcome: httpx.Response | httpx.RequestError | None = None
        try:
            while True:
                step = steps.send(outcome)
                if isinstance(step, httpx.Request):
                    try:
                        outcome = self._http.send(step)
                    except httpx.RequestError as exc:
                        outcome = exc
                else:
                    self._sleep(step)
                    outcome = None
        except StopIteration as done:
            return done.value

    # Account and secret ---------------------------------------------------------------------

    def validate(self) -> bool:
        """Whether the secret is valid and its account active. Free; meant for saving a secret."""
        try:
            return self._send(_validate_call())
        except AuthenticationError:
            # The spec promises 200 {"valid": false}; a 401 means the same thing.
            return False

    def account_get(self) -> Account:
        """GET /v1/me: identity, plan and credit balance."""
        return self._send(
            _Call(
                method="GET",
                path="/v1/me",
                parse=lambda payload: Account.model_validate(_data_object(payload)),
            )
        )

    def pricing_get(self) -> Pricing:
        """GET /v1/pricing: credit costs per model."""
        return self._send(
            _Call(
                method="GET",
                path="/v1/pricing",
                parse=lambda payload: Pricing.model_validate(_data_object(payload)),
            )
        )

    def credit_summary_get(self) -> CreditSummary:
        """GET /v2/credit-summaries: the account's live balance and minutes estimate."""
        return self._send(
            _Call(
                method="GET",
                path="/v2/credit-summaries",
                parse=lambda payload: CreditSummary.model_validate(_data_object(payload)),
            )
        )

    def usage_list(
        self,
        *,
        limit: int = 200,
        offset: int = 0,
        start: datetime | None = None,
        end: datetime | None = None,
        agent_code: str | None = None,
    ) -> UsagePage:
        """GET /v1/usage: the account's metered events, newest first (`limit` 1..200)."""
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        if start is not None:
            params["start"] = start.isoformat()
        if end is not None:
            params["end"] = end.isoformat()
        if agent_code:
            params["agent_code"] = agent_code
        return self._send(
            _Call(method="GET", path="/v1/usage", params=params, parse=_usage_page_parse)
        )

    # Agents -----------------------------------------------------------------------------------

    def agent_generate(
        self,
        *,
        prompt: str | None = None,
        image: str | None = None,
        audio: str | None = None,
        aspect_ratio: AspectRatio | None = None,
        transparency: bool | None = None,
        framing: Framing | None = None,
        model: GenerateModel | None = None,
        version: GenerateVersion | None = None,
        agent_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> GenerationStarted:
        """Start generating an agent (billed). Poll `agent_status_get` until it is terminal.

        Pass an `idempotency_key` you have stored (e.g. on the pending row) to make a retry from
        another process safe too; without one a fresh uuid4 covers this call's own retries.
        """
        body = _body(
            prompt=prompt,
            image=image,
            audio=audio,
            aspect_ratio=aspect_ratio,
            transparency=transparency,
            framing=framing,
            model=model,
            version=version,
            agent_id=agent_id,
        )
        key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
        if not key:
            raise ValueError("idempotency_key is empty")
        return self._send(_agent_generate_call(body=body, idempotency_key=key))

    def agent_status_get(self, *, agent_id: str) -> AgentStatus:
        """GET /v1/agent/status/{agent_id}: generation progress. See `AgentStatus.is_terminal`."""
        return self._send(_agent_status_call(agent_id=agent_id))

    def agent_get(self, *, code: str) -> Agent:
        """GET /v1/agent/{code}."""
        return self._send(
            _Call(
                method="GET",
                path=f"/v1/agent/{_segment(code)}",
                parse=lambda payload: Agent.model_validate(_data_object(payload)),
            )
        )

    def agent_list(
        self, *, limit: int = 20, offset: int = 0, status: str | None = None
    ) -> AgentPage:
        """GET /v1/agents: the secret's agents, newest first (`limit` 1..100)."""
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = status
        return self._send(
            _Call(method="GET", path="/v1/agents", params=params, parse=_agent_page_parse)
        )

    def agent_prompt_update(self, *, code: str, system_prompt: str) -> PromptUpdated:
        """POST /v1/agent/{code}: replace the system prompt (bitHuman keeps no history)."""
        return self._send(
            _Call(
                method="POST",
                path=f"/v1/agent/{_segment(code)}",
                json={"system_prompt": system_prompt},
                parse=lambda payload: PromptUpdated.model_validate(_object(payload)),
            )
        )

    def agent_delete(self, *, code: str) -> AgentDeleted:
        """DELETE /v1/agent/{code}. A retried delete whose first attempt went through answers
        404, so callers should treat `AgentNotFoundError` here as "already gone"."""
        return self._send(
            _Call(
                method="DELETE",
                path=f"/v1/agent/{_segment(code)}",
                parse=lambda payload: AgentDeleted.model_validate(_object(payload)),
            )
        )

    def agent_model_add(self, *, code: str, model: AddableModel) -> ModelAdded:
        """POST /v1/agent/{code}/models: add a model to a ready agent (billed per model, except
        expression-1). Sending it twice never charges twice (api/agents.md)."""
        return self._send(
            _Call(
                method="POST",
                path=f"/v1/agent/{_segment(code)}/models",
                json={"model": model},
                parse=lambda payload: ModelAdded.model_validate(_object(payload)),
            )
        )

    def agent_model_download(self, *, code: str, model: str | None = None) -> ModelDownload:
        """GET /v1/agent/{code}/model/download?redirect=false: the URL of the agent's model
        artifact (signed for an hour, except essence-1's). expression-1 has none
        (400 MODEL_NOT_DOWNLOADABLE)."""
        params: dict[str, str | int] = {"redirect": "false"}
        if model is not None:
            params["model"] = model
        return self._send(
            _Call(
                method="GET",
                path=f"/v1/agent/{_segment(code)}/model/download",
                params=params,
                parse=lambda payload: ModelDownload.model_validate(_data_object(payload)),
            )
        )

    # Files --------------------------------------------------------------------------------------

    def file_upload(
        self,
        *,
        file_data: bytes | None = None,
        file_name: str | None = None,
        file_url: str | None = None,
        file_type: FileType = "auto",
        timeout: float = UPLOAD_TIMEOUT_SECONDS,
    ) -> FileUploaded:
        """POST /v1/files/upload (api/files.md): the file's bytes (sent base64-encoded, named
        `file_name` with its extension) or a public `file_url` bitHuman downloads. Free; refuses
        a file over its category's limit (413 FILE_TOO_LARGE), an unsupported type
        (415 UNSUPPORTED_TYPE) and a link it cannot download (400 DOWNLOAD_FAILED), all as
        `ValidationError`. Pass the returned `file_url` to `agent_generate`."""
        if (file_data is None) == (file_url is None):
            raise ValueError("give file_data (with file_name) or file_url")
        if file_data is not None:
            if not file_name:
                raise ValueError("file_name is needed with file_data")
            body: dict[str, str] = {
                "file_data": base64.b64encode(file_data).decode(),
                "file_name": file_name,
                "file_type": file_type,
            }
        else:
            body = {"file_url": file_url or "", "file_type": file_type}
        return self._send(
            _Call(
                method="POST",
                path="/v1/files/upload",
                json=body,
                parse=lambda payload: FileUploaded.model_validate(_data_object(payload)),
                timeout=timeout,  # up to 50 MB of audio, base64-encoded
            )
        )

    # Live rooms --------------------------------------------------------------------------------

    def agent_speak(
        self, *, code: str, message: str, room_id: str | None = None
    ) -> ContextDelivery:
        """Make the avatar say `message` in one room or all its live rooms.

        Raises `NoActiveRoomsError` when nobody is connected to the agent.
        """
        return self._send(
            _Call(
                method="POST",
                path=f"/v1/agent/{_segment(code)}/speak",
                json=_body(message=message, room_id=room_id),
                parse=lambda payload: ContextDelivery.model_validate(_object(payload)),
                replay_safe=False,  # the avatar would say it twice
            )
        )

    def agent_context_add(
        self,
        *,
        code: str,
        context: str,
        context_type: ContextType | None = None,
        room_id: str | None = None,
    ) -> ContextDelivery:
        """Give the agent background knowledge (`add_context`) or a cue to answer (`speak`)."""
        return self._send(
            _Call(
                method="POST",
                path=f"/v1/agent/{_segment(code)}/add-context",
                json=_body(context=context, type=context_type, room_id=room_id),
                parse=lambda payload: ContextDelivery.model_validate(_object(payload)),
                replay_safe=False,
            )
        )

    def embed_token_request(
        self, *, agent_id: str, fingerprint: str, model: str | None = None
    ) -> EmbedToken:
        """A 1-hour JWT for the hosted embed, per visitor (`fingerprint`)."""
        return self._send(
            _Call(
                method="POST",
                path="/v1/embed-tokens/request",
                json=_body(agent_id=agent_id, fingerprint=fingerprint, model=model),
                parse=lambda payload: EmbedToken.model_validate(_data_object(payload)),
            )
        )

    def runtime_token_request(
        self,
        *,
        agent_code: str,
        room_name: str | None = None,
        livekit_url: str | None = None,
        livekit_token: str | None = None,
        model: str | None = None,
        billing_type: str | None = None,
        user_id: str | None = None,
        fingerprint: str | None = None,
    ) -> RuntimeToken:
        """A runtime token for one avatar session (account-scoped). Meters credits. The portal
        does not use it for LiveKit sessions: per guides/deploy-livekit.md the customer's worker
        (livekit-plugins-bithuman's AvatarSession) makes the dispatch request itself, and that
        answer carries no token (see sessions/livekit.py)."""
        body = _body(
            # The spec names the agent `agent_code`; the LiveKit dispatch (NOTES.md, the SDK)
            # sends `agent_id`. Same string: send both so either reading finds it.
            agent_code=agent_code,
            agent_id=agent_code,
            room_name=room_name,
            livekit_url=livekit_url,
            livekit_token=livekit_token,
            model=model,
            billing_type=billing_type,
            user_id=user_id,
            fingerprint=fingerprint,
        )
        return self._send(
            _Call(
                method="POST",
                path="/v1/runtime-tokens/request",
                json=body,
                parse=lambda payload: RuntimeToken.model_validate(_data_object(payload)),
                replay_safe=False,  # a billing endpoint: a second session would be metered
            )
        )

    # Runtime sessions (api/runtime-sessions.md; `user_id` is /v1/me's) ----------------------

    def runtime_session_list(
        self,
        *,
        user_id: str,
        window: RuntimeSessionWindow | None = None,
        kind: RuntimeSessionKind | None = None,
        limit: int | None = None,
    ) -> RuntimeSessionPage:
        """GET /v2/{user_id}/runtime-sessions: sessions (`limit` 1..200) and account KPIs."""
        params: dict[str, str | int] = {
            name: value
            for name, value in (("window", window), ("kind", kind), ("limit", limit))
            if value is not None
        }
        return self._send(
            _Call(
                method="GET",
                path=f"/v2/{_segment(user_id)}/runtime-sessions",
                params=params or None,
                parse=lambda payload: RuntimeSessionPage.model_validate(_data_object(payload)),
            )
        )

    def runtime_session_messages(self, *, user_id: str, session_id: str) -> Transcript:
        """GET /v2/{user_id}/runtime-sessions/{session_id}/messages: the transcript."""
        return self._send(
            _Call(
                method="GET",
                path=f"/v2/{_segment(user_id)}/runtime-sessions/{_segment(session_id)}/messages",
                parse=lambda payload: Transcript.model_validate(_data_object(payload)),
            )
        )

    def runtime_session_terminate(
        self, *, user_id: str, session_id: str, reason: str | None = None
    ) -> RuntimeSessionTerminated:
        """POST /v2/{user_id}/runtime-sessions/{session_id}/terminate: stop one session.
        Ending twice is harmless, so it is retried like a read; 404: no such session."""
        return self._send(
            _Call(
                method="POST",
                path=f"/v2/{_segment(user_id)}/runtime-sessions/{_segment(session_id)}/terminate",
                json=_body(reason=reason),
                parse=lambda payload: RuntimeSessionTerminated.model_validate(
                    _data_object(payload)
                ),
            )
        )

    def runtime_revoke_all(self, *, user_id: str, reason: str | None = None) -> RevokeAll:
        """POST /v2/{user_id}/runtime/revoke-all: suspend every runtime key (emergency)."""
        return self._send(
            _Call(
                method="POST",
                path=f"/v2/{_segment(user_id)}/runtime/revoke-all",
                json=_body(reason=reason),
                parse=lambda payload: RevokeAll.model_validate(_data_object(payload)),
            )
        )

    # Webhooks ---------------------------------------------------------------------------------

    def webhook_create(
        self,
        *,
        url: str,
        events: Iterable[WebhookEvent] | None = None,
        description: str | None = None,
    ) -> WebhookWithSecret:
        """Register `url` for signed events; store the returned `secret`, it is shown only once."""
        return self._send(
            _Call(
                method="POST",
                path="/v1/webhooks",
                json=_body(
                    url=url,
                    events=None if events is None else list(events),
                    description=description,
                ),
                parse=lambda payload: WebhookWithSecret.model_validate(_data_object(payload)),
                replay_safe=False,  # a duplicate would deliver twice, with a secret we never saw
            )
        )

    def webhook_list(self) -> tuple[Webhook, ...]:
        """GET /v1/webhooks (secrets redacted)."""
        return self._send(_Call(method="GET", path="/v1/webhooks", parse=_webhooks_parse))

    def webhook_delete(self, *, webhook_id: str) -> WebhookDeleted:
        """DELETE /v1/webhooks/{webhook_id}."""
        return self._send(
            _Call(
                method="DELETE",
                path=f"/v1/webhooks/{_segment(webhook_id)}",
                parse=lambda payload: WebhookDeleted.model_validate(_object(payload)),
            )
        )
