"""The no-op task of B7 on django-tasks-db's backend (loaded only under ``settings_peers``)."""

from django.tasks import task


@task(backend="peer")
def noop() -> None:
    return None
