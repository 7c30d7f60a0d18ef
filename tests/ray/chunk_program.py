"""A program for the chunking tests, run in Ray workers: each payload says what to do."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from django_ray.runtime.remote import Program


def run(payload: tuple[str, Any]) -> Any:
    what, argument = payload
    if what == "value":
        return argument
    if what == "raise":
        raise ValueError(argument)
    if what == "sleep":
        time.sleep(argument)
        return argument
    if what == "spin":  # CPU for ``argument`` seconds
        until = time.thread_time() + argument
        while time.thread_time() < until:
            pass
        return argument
    if what == "block":  # until the file ``argument`` exists; says it started first
        flag = Path(argument)
        Path(f"{argument}.started").write_text(str(os.getpid()))
        while not flag.exists():
            time.sleep(0.02)
        return argument
    raise AssertionError(f"unknown payload {payload!r}")


PROGRAM = Program(run=run)
