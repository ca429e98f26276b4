"""``orchestrator.cli_parser``: seeds, option types and one-line parser errors (milliseconds, nothing runs)."""

from __future__ import annotations

import argparse

import pytest

from orchestrator.cli_parser import build_parser, parse_seeds


def test_parse_seeds_takes_ranges_and_lists() -> None:
    assert parse_seeds("0-7") == list(range(8))
    assert parse_seeds("0,3,5-6") == [0, 3, 5, 6]
    assert parse_seeds("4") == [4]
    for bad in ("", "a", "3-1", "-1", "1,1", "0-2,2"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_seeds(bad)


def test_options_are_typed_and_defaulted() -> None:
    args = build_parser().parse_args(["run", "--seed", "3", "--resources", '{"vae": {"num_gpus": 1}}'])
    assert (args.command, args.seed, args.threads, args.out) == ("run", 3, 2, "serket-out")
    assert args.resources == {"vae": {"num_gpus": 1}}
    assert build_parser().parse_args(["sweep", "--seeds", "0-2"]).seeds == [0, 1, 2]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["run", "--seed", "-1"], "should be a non-negative integer, got -1"),
        (["run", "--threads", "0"], "should be a positive integer, got 0"),
        (["run", "--resources", "[1]"], 'should map module kinds or names to actor options or "auto"'),
        (["resume"], "the following arguments are required: out"),
    ],
)
def test_a_bad_option_is_one_line_and_status_2(argv: list[str], fragment: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("serket-ray: error: ") and fragment in err and err.count("\n") == 1
