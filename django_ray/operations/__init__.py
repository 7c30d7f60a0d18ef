"""What operators see and do: the status report, the doctor's checks, retry and cancel.

The management commands and the admin only parse input and call in here, so
tests (and other tools) can drive the same logic without argparse or HTTP.
"""


def count_tasks(count: int) -> str:
    """``"1 task"``, ``"3 tasks"``: the count in operator messages."""
    return f"{count} task" if count == 1 else f"{count} tasks"
