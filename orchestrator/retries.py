"""Retrying an update whose worker died: restart it from its last checkpoint, then try again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def with_retries(
    attempt: Callable[[], T],
    restart: Callable[[], None],
    is_failure: Callable[[BaseException], bool],
    max_retries: int,
    what: tuple[str, int],
) -> tuple[T, int]:
    """``attempt()``, restarting and trying again while it fails because its actor died.

    Parameters
    ----------
    attempt : callable
        One try; its result is returned.
    restart : callable
        Replaces the dead actor (called between tries).
    is_failure : callable
        Whether an exception means the actor died (anything else is raised at once).
    max_retries : int
        Restarts allowed.
    what : (str, int)
        The module's name and the round, for the messages.

    Returns
    -------
    result
        What the successful try returned.
    attempts : int
        Tries made, the successful one included.

    Raises
    ------
    RuntimeError
        Still failing after ``max_retries`` restarts (the last failure chained).
    """
    name, round_index = what
    tries = 0
    while True:
        tries += 1
        try:
            return attempt(), tries
        except Exception as exc:
            if not is_failure(exc):
                raise
            if tries > max_retries:
                raise RuntimeError(
                    f"{name} failed in round {round_index} after {tries} attempts: {type(exc).__name__}: {exc}"
                ) from exc
            log.warning(
                "%s round %d: actor failed (%s); restarting from its last checkpoint",
                name,
                round_index,
                type(exc).__name__,
            )
            restart()


__all__: list[Any] = ["with_retries"]
