"""The staff admin site's branding and `OrganizationFilter` (organizations told apart by slug),
used by every admin with an organization column. Each app registers its own models."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from portal.models import Organization

admin.site.site_header = "bitHuman Portal · staff admin"
admin.site.site_title = "bitHuman Portal staff admin"
admin.site.index_title = "Platform administration"


class OrganizationFilter(admin.SimpleListFilter):
    """Organizations by name *and* slug: several can share a name."""

    title = "organization"
    parameter_name = "organization__id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (str(pk), f"{name} ({slug})")
            for pk, name, slug in Organization.objects.order_by("name", "slug").values_list(
                "pk", "name", "slug"
            )
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(organization_id=int(value))
        return queryset
