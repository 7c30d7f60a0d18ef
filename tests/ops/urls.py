"""URLs of the operating tests: the metrics view, as a project would include it."""

from django.urls import path

from django_ray.metrics import metrics_view

urlpatterns = [path("metrics/", metrics_view)]
