"""``orchestrator.retries``: an update retried after its actor died, and the limit (no actors: milliseconds)."""

from __future__ import annotations

import pytest

from orchestrator.retries import with_retries


class _DiedError(Exception):
    pass


def _flaky(failures: int) -> tuple[object, list[str]]:
    calls: list[str] = []

    def attempt() -> str:
        calls.append("try")
        if calls.count("try") <= failures:
            raise _DiedError("actor gone")
        return "done"

    return attempt, calls


def test_a_dead_actor_is_restarted_and_the_update_tried_again() -> None:
    attempt, calls = _flaky(2)
    result, attempts = with_retries(
        attempt, lambda: calls.append("restart"), lambda e: isinstance(e, _DiedError), 2, ("vae", 3)
    )
    assert (result, attempts) == ("done", 3)
    assert calls == ["try", "restart", "try", "restart", "try"]


def test_past_the_limit_the_last_failure_is_chained() -> None:
    attempt, calls = _flaky(5)
    with pytest.raises(RuntimeError) as info:
        with_retries(attempt, lambda: calls.append("restart"), lambda e: isinstance(e, _DiedError), 1, ("gmm", 0))
    assert str(info.value) == "gmm failed in round 0 after 2 attempts: _DiedError: actor gone"
    assert isinstance(info.value.__cause__, _DiedError)
    assert calls == ["try", "restart", "try"]


def test_other_errors_are_raised_at_once_without_a_restart() -> None:
    restarts: list[int] = []

    def attempt() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        with_retries(attempt, lambda: restarts.append(1), lambda e: isinstance(e, _DiedError), 3, ("mm", 1))
    assert restarts == []
