from django.urls import path

from agents import import_views, usage_views, views

urlpatterns = [
    path("", views.agent_list, name="agent_list"),
    path("new/", views.agent_new, name="agent_new"),
    path("import/", import_views.agent_import, name="agent_import"),
    path("notices/", views.agent_notices, name="agent_notices"),
    path("usage/", usage_views.usage_page, name="usage"),
    path("<uuid:agent_id>/", views.agent_detail, name="agent_detail"),
    path("<uuid:agent_id>/prompt/", views.agent_prompt, name="agent_prompt"),
    path(
        "<uuid:agent_id>/prompt/<int:revision_id>/restore/",
        views.agent_prompt_restore,
        name="agent_prompt_restore",
    ),
    path("<uuid:agent_id>/delete/", views.agent_delete, name="agent_delete"),
    path("<uuid:agent_id>/retry/", views.agent_retry, name="agent_retry"),
    path("<uuid:agent_id>/give-up/", views.agent_give_up, name="agent_give_up"),
    path("<uuid:agent_id>/models/", views.agent_model_add, name="agent_model_add"),
    path(
        "<uuid:agent_id>/model/download/",
        views.agent_model_download,
        name="agent_model_download",
    ),
    path("<uuid:agent_id>/media/<str:kind>/", views.agent_media, name="agent_media"),
]
