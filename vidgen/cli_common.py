"""What the three command lines (`vidgen`, `vidgen-export`, `vidgen-serve`) share.

`--version` and `-v` on the top-level parser, a quiet start-up (no
TensorFlow start-up log unless `-v`), and one line on stderr, exit code 2,
for a user's mistake or a full disk (with `-v`, the traceback before it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

import vidgen
from vidgen import import_hooks
from vidgen.errors import ArgumentError, VidgenError

# Modules a plain `pip install vidgen` lacks: `vidgen[full]` installs them all, `vidgen[lite]`
# only ai_edge_litert (the LiteRT runner).
FULL_ONLY_MODULES = frozenset({"tensorflow", "keras", "tensorflow_serving", "grpc", "scipy",
                               "matplotlib", "prometheus_client", "ai_edge_litert"})


def start_up(verbose: bool) -> None:
    """What every vidgen command line does before running a command.

    Unless `verbose`: TensorFlow's C++ start-up log (oneDNN, CUDA, cuInit),
    which it writes before any log level applies, is discarded when a
    command imports TensorFlow (`import_hooks.quiet_tensorflow_import`);
    later C++ messages below errors are filtered (TF_CPP_MIN_LOG_LEVEL=2
    unless set) and the Python loggers of TensorFlow and absl show errors
    only. oneDNN stays on: only its message goes.
    """
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import_hooks.quiet_tensorflow_import()
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


# The project's top-level packages: their modules log through `logging.getLogger(__name__)`.
PROJECT_LOGGERS = ("vidgen", "export", "serving", "bench")


class _MessageFormatter(logging.Formatter):
    """Progress (INFO) as the bare message; warnings and errors with their level and logger."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno == logging.INFO:
            return record.getMessage()
        return f"{record.levelname} {record.name}: {record.getMessage()}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is emitted (it may be replaced)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure_logging(verbose: bool, timestamps: bool = False) -> None:
    """Where library code's log goes when a command line runs: stderr, INFO (DEBUG with -v).

    Library modules never print: they log, and this decides what the user
    sees. `timestamps` prefixes each line with the time (the server's log).
    Calling it again (several commands in one process) replaces its handler
    and leaves any other handler alone.
    """
    handler = _StderrHandler()
    if timestamps:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_MessageFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each argument name (argparse `dest`) of `parser` and its sub-commands -> its flag."""
    names: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for dest, flag in flag_names(sub).items():
                    names.setdefault(dest, flag)
        elif action.option_strings:
            names.setdefault(action.dest, max(action.option_strings, key=len))
    return names


def run_command(prog: str, args: argparse.Namespace,
                flags: dict[str, str] | None = None) -> int:
    """Runs `args.func(args)`: a user mistake is one line on stderr and exit code 2.

    So is a command that needs what only `vidgen[full]` installs, run where
    only `vidgen[lite]` is, and a full disk (`vidgen.fileio.DiskFullError`,
    which names the file, the free space and what to do). With `args.verbose`
    the traceback comes first, for a bug report. Shared by `vidgen`,
    `vidgen-export` and `vidgen-serve`.
    An `ArgumentError` names the flags that set the arguments it names
    (`flags`, from `flag_names`: argument name -> flag).
    """
    try:
        return args.func(args)
    except VidgenError as e:
        if getattr(args, "verbose", False):
            traceback.print_exc(file=sys.stderr)
        message = e.with_flags(flags) if isinstance(e, ArgumentError) else str(e)
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in FULL_ONLY_MODULES:
            raise
        if (e.name or "").split(".")[0] == "ai_edge_litert":
            print(f"{prog}: error: this command needs {e.name!r}, which is not installed: "
                  "`pip install \"vidgen[lite]\"` (or vidgen[full]) installs it.",
                  file=sys.stderr)
        else:
            print(f"{prog}: error: this command needs {e.name!r}, which is not installed: "
                  "`pip install \"vidgen[full]\"` installs it (vidgen[lite] runs only "
                  "`vidgen-export run-tflite`).", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`vidgen config | head`): stop quietly, as
        # command-line tools do; Python's own flush at exit must not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def verbose_anywhere(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Lets `-v` come after the command too (`vidgen train -v` as `vidgen -v train`).

    Every sub-command parser gets its own `-v`, whose default leaves the
    top-level value alone. Returns `parser`.
    """
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for sub in action.choices.values():
            taken = {flag for a in sub._actions for flag in a.option_strings}
            if not taken & {"-v", "--verbose"}:
                sub.add_argument("-v", "--verbose", action="store_true",
                                 default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            verbose_anywhere(sub)
    return parser


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """`--version` and `-v` of every vidgen command line (on the top-level parser only)."""
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {vidgen.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and TensorFlow's own start-up log")
