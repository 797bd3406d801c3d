"""Command line: one subcommand per stage; `main(argv)` is what tests call.

User errors (PipelineError) print one line on stderr and exit 1, never a traceback.
parser.py builds the parser, commands.py runs the subcommands.
"""

from __future__ import annotations

import errno
import signal
import sys
from types import FrameType

from pipeline.cli.commands import COMMANDS
from pipeline.cli.parser import RUN_FLAGS, build_parser
from pipeline.errors import PipelineError

__all__ = ["RUN_FLAGS", "build_parser", "main"]

# What the machine, not the pipeline, refuses (a full disk, a read-only mount, a folder of another user's):
# one line naming the file, as any user error. Any other OSError is a bug and keeps its traceback.
MACHINE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, `kill`, a container stopping), raised where the program is so that every
    atomic write removes its temp files, every stage's `finally` runs and each command says how to resume,
    as on Ctrl-C."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


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
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
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
    except OSError as e:
        if e.errno not in MACHINE_ERRORS:
            raise
        where = f" writing {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}; free space or choose a writable folder (--out)", file=sys.stderr)
        return 1
    except Terminated:
        print("terminated (SIGTERM); what was written whole is kept, a rerun resumes or redoes the rest",
              file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
