from django.urls import path

from sessions import live_views, views

urlpatterns = [
    path("", views.session_list, name="session_list"),
    path("start/<uuid:agent_id>/", views.session_start, name="session_start"),
    path("livekit/", views.livekit_settings, name="livekit_settings"),
    path("account/", live_views.live_sessions_page, name="live_sessions"),
    path("account/revoke-all/", live_views.runtime_revoke_all, name="runtime_revoke_all"),
    path(
        "account/<str:runtime_id>/terminate/",
        live_views.live_session_terminate,
        name="live_session_terminate",
    ),
    path("<uuid:session_id>/", views.session_console, name="session_console"),
    path("<uuid:session_id>/speak/", views.session_speak, name="session_speak"),
    path("<uuid:session_id>/context/", views.session_context, name="session_context"),
    path("<uuid:session_id>/end/", views.session_end, name="session_end"),
    path("<uuid:session_id>/timeline.csv", views.session_export_csv, name="session_export_csv"),
    path("<uuid:session_id>/timeline.json", views.session_export_json, name="session_export_json"),
    path(
        "<uuid:session_id>/quick-replies/",
        views.quick_reply_add,
        name="quick_reply_add",
    ),
    path(
        "<uuid:session_id>/quick-replies/<uuid:reply_id>/delete/",
        views.quick_reply_delete,
        name="quick_reply_delete",
    ),
]
