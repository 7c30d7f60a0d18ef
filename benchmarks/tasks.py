from django.tasks import task


@task
def noop() -> None:
    return None
