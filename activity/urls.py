from django.urls import path

from activity import views

urlpatterns = [
    path("", views.audit_log, name="audit_log"),
    path("export.csv", views.audit_export, name="audit_export"),
    path("webhooks/", views.webhook_list, name="webhook_list"),
    path("webhooks/<uuid:endpoint_id>/", views.webhook_detail, name="webhook_detail"),
    path("webhooks/<uuid:endpoint_id>/rotate/", views.webhook_rotate, name="webhook_rotate"),
    path("webhooks/<uuid:endpoint_id>/test/", views.webhook_test, name="webhook_test"),
    path("webhooks/<uuid:endpoint_id>/delete/", views.webhook_delete, name="webhook_delete"),
    path(
        "webhooks/deliveries/<uuid:delivery_id>/",
        views.delivery_detail,
        name="webhook_delivery_detail",
    ),
    path(
        "webhooks/deliveries/<uuid:delivery_id>/resend/",
        views.delivery_resend,
        name="webhook_delivery_resend",
    ),
]
