"""The process the interrupted-upgrade test stops: `python -m tests.integration._interrupt STEP
SIGNAL SCHEMA` runs `ltrr bootstrap --schema SCHEMA` (settings from the environment) and sends
itself SIGNAL at STEP of the upgrade:

- blocked: the old version has just been made read-only;
- created: the new version exists, empty;
- copying: the reindex task has just started;
- copied: everything is copied and counted, the alias not moved yet.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from opensearchpy.client.indices import IndicesClient
from opensearchpy.client.tasks import TasksClient

from ltrr_os.cli import main


def _after(owner: Any, name: str, when: Any, signum: int) -> None:
    original = getattr(owner, name)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if when(kwargs):
            os.kill(os.getpid(), signum)
        return result

    setattr(owner, name, wrapper)


def _before(owner: Any, name: str, signum: int) -> None:
    original = getattr(owner, name)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signum)
        return original(self, *args, **kwargs)

    setattr(owner, name, wrapper)


def arm(step: str, signum: int) -> None:
    if step == "blocked":
        _after(IndicesClient, "add_block", lambda kw: kw.get("block") == "write", signum)
    elif step == "created":
        _after(IndicesClient, "create", lambda kw: "_v" in str(kw.get("index")), signum)
    elif step == "copying":
        _before(TasksClient, "get", signum)  # the first look at the running reindex
    elif step == "copied":
        _before(IndicesClient, "update_aliases", signum)
    else:
        raise SystemExit(f"unknown step {step}")


if __name__ == "__main__":
    step, name, schema = sys.argv[1:4]
    arm(step, getattr(signal, name))
    sys.argv = ["ltrr", "bootstrap", "--schema", schema]
    main()
