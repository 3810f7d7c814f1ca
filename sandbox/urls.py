"""The sandbox, mounted at /sandbox/: bitHuman's API under v1/, its hosted embed page, and the
sandbox's own control API (knobs, test clock, rooms)."""

from django.urls import URLPattern, URLResolver, path, re_path

from sandbox import livekit_views, views

app_name = "sandbox"

urlpatterns: list[URLPattern | URLResolver] = [
    # bitHuman's REST API (openapi.yaml)
    path("v1/validate", views.validate, name="validate"),
    path("v1/agent/generate", views.agent_generate, name="agent_generate"),
    path("v1/agent/status/<str:agent_id>", views.agent_status, name="agent_status"),
    path("v1/agent/<str:code>", views.agent_detail, name="agent_detail"),
    path("v1/agent/<str:code>/speak", views.agent_speak, name="agent_speak"),
    path("v1/agent/<str:code>/add-context", views.agent_add_context, name="agent_add_context"),
    path("v1/agent/<str:code>/models", views.agent_model_add, name="agent_model_add"),
    path(
        "v1/agent/<str:code>/model/download",
        views.agent_model_download,
        name="agent_model_download",
    ),
    path("v1/files/upload", views.file_upload, name="file_upload"),
    path("v1/agents", views.agent_list, name="agent_list"),
    path("v1/embed-tokens/request", views.embed_token_request, name="embed_token_request"),
    path("v1/runtime-tokens/request", views.runtime_token_request, name="runtime_token_request"),
    path("v1/me", views.me, name="me"),
    path("v1/pricing", views.pricing, name="pricing"),
    path("v1/usage", views.usage, name="usage"),
    path("v1/webhooks", views.webhooks, name="webhooks"),
    path("v1/webhooks/<str:webhook_id>", views.webhook_detail, name="webhook_detail"),
    path("v1/webhooks/<str:webhook_id>/test", views.webhook_test, name="webhook_test"),
    path(
        "v1/webhooks/<str:webhook_id>/deliveries",
        views.webhook_deliveries,
        name="webhook_deliveries",
    ),
    re_path(r"^v1/(?P<path>.*)$", views.not_found, name="not_found"),
    # Runtime sessions (api/runtime-sessions.md; not in openapi.yaml)
    path("v2/<str:user_id>/runtime-sessions", views.runtime_sessions, name="runtime_sessions"),
    path(
        "v2/<str:user_id>/runtime-sessions/<str:session_id>/messages",
        views.runtime_session_messages,
        name="runtime_session_messages",
    ),
    path(
        "v2/<str:user_id>/runtime-sessions/<str:session_id>/terminate",
        views.runtime_session_terminate,
        name="runtime_session_terminate",
    ),
    path(
        "v2/<str:user_id>/runtime/revoke-all",
        views.runtime_revoke_all,
        name="runtime_revoke_all",
    ),
    # Billing (api/billing.md) and API secrets (api/api-keys.md)
    path("v2/credit-summaries", views.credit_summaries, name="credit_summaries"),
    path("v2/<str:user_id>/api-secrets", views.api_secrets, name="api_secrets"),
    path(
        "v2/<str:user_id>/api-secrets/<str:alias>/get-value",
        views.api_secret_value,
        name="api_secret_value",
    ),
    path(
        "v2/<str:user_id>/api-secrets/<str:alias>",
        views.api_secret_detail,
        name="api_secret_detail",
    ),
    re_path(r"^v2/(?P<path>.*)$", views.not_found, name="not_found_v2"),
    # The hosted embed page and the files it and the API point at
    path("embed/<str:code>", views.embed_page, name="embed"),
    path("embed/<str:code>/live", views.embed_live, name="embed_live"),
    path("embed/<str:code>/talk", views.embed_talk, name="embed_talk"),
    path("embed/<str:code>/face.svg", views.face, name="face"),
    path("embed/<str:code>/face", views.agent_face, name="agent_face"),
    path("files/<str:code>.imx", views.model_file, name="model_file"),
    # A stand-in for the customer's LiveKit project (sandbox/livekit.py): LiveKit's server API
    # (Twirp) and the page a room link opens
    path("livekit/", views.not_found, name="livekit_root"),
    re_path(
        r"^livekit/twirp/livekit\.(?P<service>\w+)/(?P<method>\w+)$",
        livekit_views.twirp,
        name="livekit_twirp",
    ),
    path("livekit/meet", livekit_views.meet, name="livekit_meet"),
    path("livekit/meet/live", livekit_views.meet_live, name="livekit_meet_live"),
    path("assets/<uuid:file_id>/<str:name>", views.file_asset, name="file_asset"),
    # The sandbox's own control API (api-secret auth; not part of bitHuman's API)
    path("control/account", views.control_account, name="control_account"),
    path("control/livekit", livekit_views.control_livekit, name="control_livekit"),
    path("control/clock", views.control_clock, name="control_clock"),
    path("control/rooms", views.control_rooms, name="control_rooms"),
    path("control/rooms/<str:room_id>/end", views.control_room_end, name="control_room_end"),
    path(
        "control/rooms/<str:room_id>/worker", views.control_room_worker, name="control_room_worker"
    ),
]
