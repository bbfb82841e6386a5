"""Where several workers' metrics meet (prometheus_client's multiprocess mode). Deliberately free of
prometheus_client imports: the mode is chosen when prometheus_client is first imported, so the directory must be set
before that, in the process that forks the workers."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def shared_dir() -> str | None:
    """The directory every worker's metric files are in, when multiprocess mode is on."""
    return os.environ.get(MULTIPROCESS_ENV) or None


@contextlib.contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """Turns on multiprocess mode for this process and the workers it forks: $PROMETHEUS_MULTIPROC_DIR if set
    (emptied first, as prometheus_client requires), else a private directory removed afterwards. Must run before
    the first metric is made in this process."""
    given = shared_dir()
    if given is not None:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.remove(os.path.join(given, name))
        yield given
        return
    made = tempfile.mkdtemp(prefix="chatops-metrics-")
    os.environ[MULTIPROCESS_ENV] = made
    try:
        yield made
    finally:
        os.environ.pop(MULTIPROCESS_ENV, None)
        shutil.rmtree(made, ignore_errors=True)


def worker_ended(pid: int) -> None:
    """Drops an ended worker's live gauges from the shared metrics (its counters keep counting in the total)."""
    if shared_dir() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)
