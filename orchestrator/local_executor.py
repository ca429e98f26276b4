"""The in-process executor: workers as plain objects in this process (tests, benchmarks, ``--backend local``).

It has the calls of :class:`orchestrator.executor.RayExecutor`, so the session's
scheduling code is the same whichever runs it.
"""

from __future__ import annotations

import contextlib
from typing import Any


class LocalExecutor:
    """Runs workers as plain objects in this process; "references" are the values."""

    name = "local"

    def __init__(self) -> None:
        self.threads: dict[int, int] = {}  # BLAS threads during each worker's calls (see set_threads)

    def set_threads(self, worker: Any, threads: int, wait: bool = True) -> None:
        """numpy's BLAS threads while this process runs ``worker``'s calls (restored after each call).

        Nothing to wait for in one process: ``wait`` is accepted for the Ray executor's signature.
        """
        self.threads[id(worker)] = int(threads)

    def reserve(
        self,
        resources: list[dict[str, Any]],
        labels: list[str] | None = None,
        strategy: str = "PACK",
        timeout: float = 60.0,
    ) -> list[int | None]:
        """Nothing to reserve in this process: every worker gets ``None`` (no bundle)."""
        return [None] * len(resources)

    def bundle_info(self, bundle: int | None) -> dict[str, Any]:
        return {}

    def start(
        self, label: str, cls: type, args: tuple[Any, ...], resources: dict[str, Any], bundle: int | None = None
    ) -> Any:
        return cls(*args)

    def put(self, value: Any) -> Any:
        return value

    def call(self, worker: Any, method: str, n_returns: int, **kwargs: Any) -> list[Any]:
        with blas_threads(self.threads.get(id(worker))):
            out = getattr(worker, method)(**kwargs)
        return list(out) if n_returns > 1 else [out]

    def get(self, refs: list[Any], timeout: float | None = None) -> list[Any]:
        return list(refs)

    def wait(self, refs: list[Any], timeout: float) -> bool:
        """Whether every result is ready (in this process a call has returned when it is)."""
        return True

    def is_actor_failure(self, exc: BaseException) -> bool:
        return False

    def kill(self, worker: Any) -> None:
        pass

    def node_of(self, worker: Any) -> dict[str, Any]:
        return {"node_id": None, "node_ip": "127.0.0.1", "resources": {}}

    def shutdown(self) -> None:
        pass


def blas_threads(threads: int | None) -> Any:
    """A context limiting numpy's BLAS (OpenBLAS, MKL, ...) to ``threads`` threads; nothing for None."""
    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=int(threads), user_api="blas")
