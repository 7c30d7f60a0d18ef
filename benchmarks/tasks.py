from django.tasks import task


@task
def noop() -> None:
    return None


@task
def stamp() -> float:
    """When the task started running, on the Ray worker's clock (the same machine)."""
    import time

    return time.time()
