"""Exceptions django-ray records on a row of its own (their class paths are in ``errors``).

Some older ones live beside the code that raises them, and keep their paths:
``django_ray.cancel.TaskCancelled``, ``django_ray.registry.UnregisteredTask``,
``django_ray.payloads.PayloadError``, ``django_ray.worker.recovery.WorkerLost`` and
``django_ray.runtime.jobs.RayJobFailed``.
"""

from __future__ import annotations


class OutcomeNotRecordable(Exception):
    """Recording what happened to a row raised; the row is failed with the cause, alone."""


class InvalidSignature(Exception):
    """The row's signature does not match what it would run: it was not written by
    ``enqueue()`` with this ``SECRET_KEY`` (or one of ``SECRET_KEY_FALLBACKS``)."""


class TaskTimeout(TimeoutError):
    """The attempt ran past its time limit (``timeout``) and was stopped on Ray: its Ray
    worker process killed (``ray_core``) or its Ray Job stopped (``ray_job``)."""
