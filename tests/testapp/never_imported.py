"""A module only tests name, to show that an unsigned row never gets it imported."""

from django.tasks import task


@task
def boom() -> None:
    raise AssertionError("a row that enqueue() did not sign ran")
