"""Command line: one subcommand per stage; `main(argv)` is what tests call.

User errors (PipelineError) print one line on stderr and exit 1, never a traceback.
parser.py builds the parser, commands.py runs the subcommands.
"""

from __future__ import annotations

import sys

from pipeline.cli.commands import COMMANDS
from pipeline.cli.parser import RUN_FLAGS, build_parser
from pipeline.errors import PipelineError

__all__ = ["RUN_FLAGS", "build_parser", "main"]


def _glue_negative_budgets(argv: list[str]) -> list[str]:
    """`--budget -3ms` would be read by argparse as a missing value plus an unknown option; glue it into
    `--budget=-3ms` so that the budget check answers with what a budget looks like."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if arg == "--budget" and nxt.startswith("-") and not nxt.startswith("--"):
            out.append(f"--budget={nxt}")
            skip = True
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        # Inside the try: some flags are read by the parsers of their configs (--max-params: parse_count).
        args = parser.parse_args(_glue_negative_budgets(sys.argv[1:] if argv is None else argv))
        if not args.command:
            parser.print_help()
            return 0
        return COMMANDS[args.command](args)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
