from django.contrib import admin
from django.urls import include, path

from django_ray.metrics import metrics_view

urlpatterns = [
    path("", include("demo.urls")),
    path("admin/", admin.site.urls),
    # Queue depth for Prometheus; keep it off the public internet (docs/security.md).
    path("metrics/", metrics_view, name="metrics"),
]
