"""Test-only endpoints that exercise the platform pipeline without any domain app."""

import time
from decimal import Decimal

from django.urls import path
from rest_framework import serializers
from rest_framework.response import Response

from budgeting_site import urls as site_urls
from budgeting_site.platform import clock
from budgeting_site.platform.errors import NotFound
from budgeting_site.platform.models import ApiKey, AuditLogEntry
from budgeting_site.platform.permissions import TENANT_ADMIN, roles
from budgeting_site.platform.serializers import ClientIdField, MoneyField, StrictSerializer
from budgeting_site.platform.views import ApiView, parse_uuid


class WidgetIn(StrictSerializer):
    server_owned = frozenset({"id", "created_at"})
    tenant_id = ClientIdField(required=False)
    name = serializers.CharField(max_length=50)
    size = MoneyField(min_value=Decimal(0))


class WidgetsView(ApiView):
    roles = {"post": roles(TENANT_ADMIN)}

    def post(self, request):  # type: ignore[no-untyped-def]
        data = WidgetIn(data=request.data)
        data.is_valid(raise_exception=True)
        # Widen the window in which concurrent duplicates overlap.
        time.sleep(0.05)
        entry = AuditLogEntry.objects.create(
            at=clock.now(),
            action="widget_created",
            principal=self.principal.principal,
            tenant_id=self.tenant_id(),
            details={"name": data.validated_data["name"]},
        )
        return Response(
            {
                "id": entry.pk,
                "name": data.validated_data["name"],
                "size": data.validated_data["size"],
            },
            status=201,
        )


class KeyView(ApiView):
    roles = {"get": roles(TENANT_ADMIN)}

    def get(self, request, key_id):  # type: ignore[no-untyped-def]
        key = ApiKey.objects.filter(
            pk=parse_uuid(key_id, "key_id"), tenant_id=self.tenant_id()
        ).first()
        if key is None:
            raise NotFound("API key not found")
        return Response({"id": str(key.pk), "name": key.name})


urlpatterns = [
    path("budget/v1/_test/widgets", WidgetsView.as_view()),
    path("budget/v1/_test/keys/<str:key_id>", KeyView.as_view()),
    *site_urls.urlpatterns,
]
handler404 = site_urls.handler404
handler500 = site_urls.handler500
