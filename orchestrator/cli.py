"""The ``serket-ray`` command line: :func:`main` runs one sub-command and turns its failure into one line.

The parser is :mod:`orchestrator.cli_parser`, the sub-commands
:mod:`orchestrator.cli_commands`.  Nothing in the package imports these three.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, NoReturn

from messages.errors import SerketRayError, StorageError
from orchestrator import runlock, stopping
from orchestrator.cli_commands import cmd_recog, cmd_report, cmd_resume, cmd_run, cmd_sweep
from orchestrator.cli_parser import build_parser, parse_seeds

__all__ = ["build_parser", "entry", "main", "parse_seeds"]

log = logging.getLogger("serket_ray.cli")


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def quiet_local_ray(address: str | None) -> None:
    """Ask a local Ray for token authentication explicitly (``RAY_AUTH_MODE=token``).

    Ray >= 2.60 turns token authentication on for a new local cluster when
    ``RAY_AUTH_MODE`` is unset and logs a WARNING saying so on every run; set
    explicitly, the mode is the same and Ray says nothing.  Only for a local Ray
    (no ``--address``, no ``RAY_ADDRESS``) and only when the user has not chosen a
    mode: a cluster's own setting is left alone.  It must happen before Ray is
    imported, which reads the mode once.
    """
    if address or os.environ.get("RAY_ADDRESS") or "ray" in sys.modules:
        return
    os.environ.setdefault("RAY_AUTH_MODE", "token")


def _end_line(text: str) -> None:
    """The command's last line, on stderr, after clearing a progress bar left on a terminal."""
    if sys.stdout.isatty():
        sys.stdout.write("\r\x1b[K")
        sys.stdout.flush()
    print(text, file=sys.stderr, flush=True)


def _run_stoppably(args: Any, out: Any) -> None:
    """``run`` or ``resume``, with SIGINT / SIGTERM stopping it after the update in flight."""
    again = (
        f"serket-ray: stopped at once ({{signal}}); the last complete update is kept; "
        f"`serket-ray resume {out}` continues"
    )
    with stopping.stop_on_signals(again):
        try:
            (cmd_run if args.command == "run" else cmd_resume)(args)
        except stopping.Interrupted:
            raise
        except BaseException as exc:  # whatever a library made of the signal, it was the signal
            if stopping.requested() is not None:
                raise stopping.Interrupted(stopping.requested()) from exc
            raise


def _stopped_line(exc: stopping.Interrupted, out: Any) -> str:
    kept = stopping.what_was_kept(out)
    then = (
        "" if kept.complete else f"; `serket-ray resume {out}` continues" if kept.resumable else "; nothing to resume"
    )
    return f"serket-ray: stopped by {exc.name} {kept.where()}{then}"


def _storage_error_line(exc: StorageError, command: str, out: Any) -> str:
    if command not in ("run", "resume"):
        return f"serket-ray: error: {exc}"
    kept = stopping.what_was_kept(out)
    if kept.unreadable:
        then = f"; once it answers, `serket-ray resume {out}` continues from the last update run.json records"
    elif kept.complete:
        then = "; the run itself is complete"
    else:
        then = f"; make room, then `serket-ray resume {out}` continues" if kept.resumable else "; nothing to resume"
    return f"serket-ray: error: {exc}; stopped {kept.where()}{then}"


_COMMANDS = {"recog": cmd_recog, "sweep": cmd_sweep, "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``serket-ray``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, getattr(args, "quiet", False))
    quiet_local_ray(getattr(args, "address", None))
    out = getattr(args, "out", None)
    try:
        if args.command in ("run", "resume"):
            _run_stoppably(args, out)
        elif args.command in _COMMANDS:
            _COMMANDS[args.command](args)
        return 0
    except SerketRayError as exc:
        if args.debug:
            raise
        print(f"serket-ray: error: {exc}", file=sys.stderr)
        return 2
    except stopping.Interrupted as exc:
        _end_line(_stopped_line(exc, out))
        return exc.exit_status
    except StorageError as exc:
        if args.debug:
            raise
        _end_line(_storage_error_line(exc, args.command, out))
        return 1
    except KeyboardInterrupt:
        print("serket-ray: interrupted", file=sys.stderr)
        return 130
    finally:
        runlock.release_all()


def entry() -> NoReturn:
    """The ``serket-ray`` console script: :func:`main`, then a quick exit.

    By the time ``main`` returns, every file of the run is written, fsynced and
    renamed.  What a normal interpreter exit would still do is wait: Ray's exit
    hook sleeps 0.5 s before stopping the local Ray it started, and tearing down
    torch, pyarrow and their thread pools takes seconds more on a busy machine.
    So Ray is stopped here (without the sleep, its monitor killed first:
    :func:`orchestrator.executor.stop_local_monitor`), output is flushed, and the
    process ends at once.
    """
    status = main()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        from orchestrator.executor import disconnect_ray

        disconnect_ray()  # stops the processes of a local Ray this run started; only disconnects from a cluster
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    entry()
