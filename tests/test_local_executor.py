"""``orchestrator.local_executor``: workers as plain objects in this process, with the calls of the Ray executor."""

from __future__ import annotations

from threadpoolctl import threadpool_info

from orchestrator.local_executor import LocalExecutor, blas_threads


class _Worker:
    def __init__(self, base: int) -> None:
        self.base = base

    def one(self, x: int) -> int:
        return self.base + x

    def two(self, x: int) -> tuple[int, int]:
        return self.base, x

    def blas(self) -> list[int]:
        return sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})


def test_calls_return_one_reference_per_output_and_references_are_values() -> None:
    ex = LocalExecutor()
    (bundle,) = ex.reserve([{"num_cpus": 1}], ["w"])
    worker = ex.start("w", _Worker, (10,), {"num_cpus": 1}, bundle)
    assert bundle is None and ex.bundle_info(bundle) == {}
    assert ex.call(worker, "one", 1, x=5) == [15]
    refs = ex.call(worker, "two", 2, x=ex.put(7))
    assert refs == [10, 7] and ex.get(refs) == [10, 7] and ex.wait(refs, 0.0)
    assert not ex.is_actor_failure(RuntimeError("x"))


def test_blas_threads_hold_during_each_call_only_and_per_worker() -> None:
    """Each worker's calls run with its own BLAS thread count (the VAE's, and one for the GMM and MM)."""
    ex = LocalExecutor()
    one, two = _Worker(0), _Worker(1)
    ex.set_threads(one, 1)
    ex.set_threads(two, 2)
    if one.blas():  # numpy's BLAS is seen by threadpoolctl
        outside = one.blas()
        assert ex.call(one, "blas", 1) == [[1]]
        assert ex.call(two, "blas", 1) == [[2]]
        assert ex.call(one, "blas", 1) == [[1]]
        assert one.blas() == outside  # restored after each call
    with blas_threads(None):  # nothing to limit
        assert ex.threads == {id(one): 1, id(two): 2}
