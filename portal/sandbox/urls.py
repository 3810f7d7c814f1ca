from django.urls import URLPattern, URLResolver

# Filled by the sandbox: the bitHuman API paths (v1/...) and the hosted embed page.
urlpatterns: list[URLPattern | URLResolver] = []
