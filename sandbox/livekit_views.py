"""The stand-in LiveKit project's HTTP side (sandbox/livekit.py): LiveKit's server API (Twirp,
protobuf or JSON bodies as LiveKit accepts both), the room viewer page a room link opens (what
LiveKit Meet's custom-server link shows: the avatar's face and what it says), and the control
call that gives the project's URL and keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csp import get_nonce
from django.shortcuts import render
from django.urls import reverse
from django.utils.csp import CSP, build_policy
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit.protocol import agent_dispatch as lk_dispatch
from livekit.protocol import models as lk_models
from livekit.protocol import room as lk_room

from sandbox import conf, selectors
from sandbox import livekit as sandbox_livekit
from sandbox.fields import query_int
from sandbox.http import api_endpoint, method_not_allowed_response
from sandbox.livekit import TwirpError
from sandbox.models import SandboxAccount, SandboxLiveKitDispatch, SandboxLiveKitRoom
from sandbox.views import _embed_policy, face_url

PROTOBUF = "application/protobuf"


def _room_message(room: SandboxLiveKitRoom) -> lk_models.Room:
    return lk_models.Room(
        sid=room.sid,
        name=room.name,
        empty_timeout=room.empty_timeout,
        metadata=room.metadata,
        creation_time=int(room.created_at.timestamp()),
        num_participants=sum(1 for d in room.dispatches.all() if d.state == "joined"),
    )


def _dispatch_message(dispatch: SandboxLiveKitDispatch) -> lk_dispatch.AgentDispatch:
    return lk_dispatch.AgentDispatch(
        id=dispatch.dispatch_id,
        agent_name=dispatch.agent_name,
        room=dispatch.room.name,
        metadata=dispatch.metadata,
    )


def _create_room(account: SandboxAccount, claims: dict[str, Any], body: Any) -> Message:
    sandbox_livekit.grant_require(claims, "roomCreate")
    room = sandbox_livekit.room_create(
        account=account, name=body.name, metadata=body.metadata, empty_timeout=body.empty_timeout
    )
    return _room_message(room)


def _delete_room(account: SandboxAccount, claims: dict[str, Any], body: Any) -> Message:
    sandbox_livekit.grant_require(claims, "roomCreate")
    sandbox_livekit.room_delete(account=account, name=body.room)
    return lk_room.DeleteRoomResponse()


def _list_rooms(account: SandboxAccount, claims: dict[str, Any], body: Any) -> Message:
    sandbox_livekit.grant_require(claims, "roomList")
    found = sandbox_livekit.rooms_list(account=account, names=list(body.names))
    return lk_room.ListRoomsResponse(rooms=[_room_message(room) for room in found])


def _create_dispatch(account: SandboxAccount, claims: dict[str, Any], body: Any) -> Message:
    sandbox_livekit.grant_require(claims, "roomAdmin", room=body.room)
    dispatch = sandbox_livekit.dispatch_create(
        account=account, room_name=body.room, agent_name=body.agent_name, metadata=body.metadata
    )
    return _dispatch_message(dispatch)


_Method = Callable[[SandboxAccount, dict[str, Any], Any], Message]
METHODS: dict[tuple[str, str], tuple[type[Message], _Method]] = {
    ("RoomService", "CreateRoom"): (lk_room.CreateRoomRequest, _create_room),
    ("RoomService", "DeleteRoom"): (lk_room.DeleteRoomRequest, _delete_room),
    ("RoomService", "ListRooms"): (lk_room.ListRoomsRequest, _list_rooms),
    ("AgentDispatchService", "CreateDispatch"): (
        lk_dispatch.CreateAgentDispatchRequest,
        _create_dispatch,
    ),
}


def _twirp_error(error: TwirpError) -> JsonResponse:
    return JsonResponse({"code": error.code, "msg": error.msg}, status=error.status)


@csrf_exempt
def twirp(request: HttpRequest, service: str, method: str) -> HttpResponse:
    """POST /livekit/twirp/livekit.<Service>/<Method>."""
    try:
        if request.method != "POST":
            raise TwirpError("bad_route", f"unsupported method {request.method} (only POST)")
        found = METHODS.get((service, method))
        if found is None:
            raise TwirpError("bad_route", f"no handler for path livekit.{service}/{method}")
        request_class, handler = found
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            raise TwirpError("unauthenticated", "no authorization header")
        account, claims = sandbox_livekit.token_verify(auth.removeprefix("Bearer ").strip())
        protobuf = request.content_type == PROTOBUF
        try:
            body = (
                request_class.FromString(request.body)
                if protobuf
                else json_format.Parse(request.body or b"{}", request_class())
            )
        except (DecodeError, json_format.ParseError):
            raise TwirpError("malformed", "the request body could not be decoded") from None
        answer = handler(account, claims, body)
    except TwirpError as error:
        return _twirp_error(error)
    if protobuf:
        return HttpResponse(answer.SerializeToString(), content_type=PROTOBUF)
    return HttpResponse(json_format.MessageToJson(answer), content_type="application/json")


# --- The room viewer (what a room link opens) ---------------------------------------------------


@xframe_options_exempt
@require_GET
def meet(request: HttpRequest) -> HttpResponse:
    token = request.GET.get("token", "")
    context: dict[str, object] = {"code": "", "agent": None, "token": token, "problem": ""}
    status = 200
    try:
        viewer = sandbox_livekit.viewer_open(token=token)
    except TwirpError as error:
        context["problem"], status = error.msg, error.status
    else:
        agent = selectors.agent_public(code=viewer.agent_code) if viewer.agent_code else None
        context["problem"] = viewer.problem
        if agent is not None:
            context |= {
                "code": agent.code,
                "agent": agent,
                "face_url": face_url(agent),
                "fallback_url": reverse("sandbox:face", args=[agent.code]),
                "live_url": reverse("sandbox:livekit_meet_live"),
                "poll_ms": conf.embed_poll_ms(),
            }
    response = render(request, "sandbox/embed.html", context, status=status)
    response[str(CSP.HEADER_ENFORCE)] = build_policy(_embed_policy(), get_nonce(request))
    return response


@csrf_exempt
@require_POST
def meet_live(request: HttpRequest) -> HttpResponse:
    """The viewer page's poll: what speak / add-context delivered to the avatar in this room."""
    try:
        viewer = sandbox_livekit.viewer_open(token=request.GET.get("token", ""))
        if viewer.problem:
            raise TwirpError("not_found", viewer.problem)
        after = query_int(request, "after", default=0, minimum=0, maximum=2**62)
    except TwirpError as error:
        return JsonResponse({"error": {"code": error.code, "message": error.msg}}, status=404)
    runtime = selectors.rooms_live(account=viewer.account, name=viewer.room.name).first()
    if runtime is None:
        return JsonResponse(
            {"error": {"code": "not_found", "message": "The avatar has left this room."}},
            status=404,
        )
    messages = [
        {"id": m.id, "type": m.kind, "text": m.text, "created_at": m.created_at.isoformat()}
        for m in selectors.room_messages(room=runtime, after=after)
    ]
    return JsonResponse({"room_id": viewer.room.name, "messages": messages})


# --- Control: the project's URL and keys (what a LiveKit project's settings page shows) ---------


@api_endpoint(None, faults=False)
def control_livekit(request: HttpRequest, account: SandboxAccount) -> HttpResponse:
    if request.method != "GET":
        return method_not_allowed_response()
    api_key, api_secret = sandbox_livekit.project_credentials(account=account)
    meet_url = request.build_absolute_uri(reverse("sandbox:livekit_meet"))
    return JsonResponse(
        {
            "url": request.build_absolute_uri(reverse("sandbox:livekit_root")).rstrip("/"),
            "api_key": api_key,
            "api_secret": api_secret,
            "room_link_template": meet_url + "?liveKitUrl={url}&token={token}",
        }
    )
