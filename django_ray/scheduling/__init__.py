"""Periodic tasks: ``DJANGO_RAY["SCHEDULE"]``, enqueued by workers started with ``--schedule``.

:mod:`~django_ray.scheduling.entries` checks the entries and knows when each is due;
:mod:`~django_ray.scheduling.scheduler` enqueues each due time once, however many
workers schedule.
"""
