"""Every state change of a task execution, each written once and fenced once.

- :mod:`~django_ray.lifecycle.enqueue`: new READY rows, checked, signed and written at once
  (``enqueue()``, ``enqueue_many()``);
- :mod:`~django_ray.lifecycle.attempts`: what a Django worker does to the rows it runs
  (claim, succeed, retry, fail, hand back, adopt, and the facts it keeps on them);
- :mod:`~django_ray.lifecycle.outcomes`: how an attempt's outcome becomes one of those
  changes (the retry policy, cancellation, losses), one row at a time or in batches;
- :mod:`~django_ray.lifecycle.operator`: an operator's retry and cancel;
- :mod:`~django_ray.lifecycle.celery`: the rows of tasks run by the Celery pool;
- :mod:`~django_ray.lifecycle.postgres`: the one SQL helper, inserts and batches on PostgreSQL;
- :mod:`~django_ray.lifecycle.errors`: the one builder of error data;
- :mod:`~django_ray.lifecycle.announce`: the signals sent once a change is committed.

Nothing is imported here, so the pure parts (errors) load without the ORM.
"""
