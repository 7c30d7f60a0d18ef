"""An app made by a factory, its tasks defined inside it: no module holds either."""

from __future__ import annotations

from celery import Celery

from tests.celery.app import bridge_config


def create_app(main: str) -> Celery:
    app = Celery(main, set_as_current=False)
    app.conf.update(bridge_config(), django_ray_record_executions=False)

    @app.task(name="layouts.factory.triple", shared=False)
    def triple(x: int) -> int:
        return 3 * x

    @app.task(bind=True, name="layouts.factory.where", max_retries=7, shared=False)
    def where(self) -> dict[str, object]:
        import os

        return {"pid": os.getpid(), "app": self.app.main, "max_retries": self.max_retries}

    return app
