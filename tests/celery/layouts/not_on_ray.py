"""A task module that imports in the worker but not in its Ray workers (which have the
pool's app identity in their environment): a deploy that reached one machine only."""

import os

if os.environ.get("DJANGO_RAY_CELERY_APP"):
    raise RuntimeError("this module is not deployed on the Ray nodes")
