from __future__ import annotations

from django.apps import AppConfig


class DjangoRayConfig(AppConfig):
    name = "django_ray"
    verbose_name = "django-ray"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_ray import conf, metrics, signals  # noqa: F401  (connect receivers)

        # Fail fast: a worker or web process with broken settings should not start.
        conf.validate_on_startup()
