"""B3: the cost of one claim with 1,000 and with 1,000,000 READY rows (plus as many finished).

Rows are written with one INSERT ... SELECT generate_series per batch (unsigned:
they are only claimed here, never run); each
claim runs in a transaction that is rolled back, so every measurement sees
the same table.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.harness import report, setup_django

INSERT = """
INSERT INTO django_ray_taskexecution (
    id, backend, task_path, args, kwargs, queue_name, priority, takes_context, options,
    state, attempt, worker, worker_ids, runner, ray_handle, ray_status, lost_attempts,
    enqueued_at, errors, origin, celery_task_id, signature)
SELECT gen_random_uuid(), 'default', 'benchmarks.tasks.noop', '[]', '{}', 'default',
    (g %% 3) - 1, false, '{}', %s, 0, '', '[]', '', '', '', 0,
    now() - (g || ' milliseconds')::interval, '[]', 'tasks', '', ''
FROM generate_series(1, %s) AS g
"""


def fill(ready: int, finished: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE django_ray_taskexecution")
        for state, count in (("READY", ready), ("SUCCESSFUL", finished)):
            while count > 0:
                batch = min(count, 200_000)
                cursor.execute(INSERT, [state, batch])
                count -= batch
        cursor.execute("ANALYZE django_ray_taskexecution")


def claim_ms(repeat: int, limit: int) -> float:
    from django.db import transaction

    from django_ray.lifecycle import attempts

    samples = []
    for _ in range(repeat):
        with transaction.atomic():
            started = time.perf_counter()
            rows = attempts.claim(limit, worker_id="bench", queues=["default"], runner="ray_core")
            samples.append((time.perf_counter() - started) * 1000)
            assert len(rows) == limit
            transaction.set_rollback(True)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    setup_django()
    fill(1000, 1000)
    small = claim_ms(30, args.limit)
    fill(args.large, args.large)
    large = claim_ms(30, args.limit)
    fill(0, 0)
    report(
        "B3: backlog, claim cost",
        [
            (f"claim {args.limit}, 1,000 READY + 1,000 finished", f"{small:.2f} ms (median)"),
            (
                f"claim {args.limit}, {args.large:,} READY + {args.large:,} finished",
                f"{large:.2f} ms",
            ),
            ("ratio large / small (target <= 1.5)", f"{large / small:.2f}"),
        ],
        {
            "limit": args.limit,
            "large": args.large,
            "small_ms": small,
            "large_ms": large,
            "ratio": large / small,
        },
    )


if __name__ == "__main__":
    main()
