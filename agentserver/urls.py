from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView

from agentserver import views

handler404 = "agentserver.errors.not_found_view"
handler500 = "agentserver.errors.server_error_view"

urlpatterns = [
    path("", views.OkView.as_view()),
    path("ok", views.OkView.as_view(), name="ok"),
    path("info", views.InfoView.as_view(), name="info"),
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("docs", SpectacularSwaggerView.as_view(url_name="openapi"), name="docs"),
    path("admin/", admin.site.urls),
    path("", include("runs.urls")),
    path("", include("threads.urls")),
]
