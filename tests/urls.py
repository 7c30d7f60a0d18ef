"""URLs for tests that drive the Django admin through the test client."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
