"""The ``edgekit`` command line: a thin layer over the library.

Each sub-command lives in its own module of this package and exposes a click
command named ``command``. :func:`main` returns an exit code instead of
exiting, so tests call it in-process; library errors become one line on
stderr and the exit code of their class, never a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import threading
from typing import Iterator

import click

from edgekit import __version__
from edgekit.errors import EdgekitError

# One line per sub-command module; each defines `command`.
COMMAND_MODULES = [
    "edgekit.cli.build_cmd",
    "edgekit.cli.targets_cmd",
    "edgekit.cli.inspect_cmd",
    "edgekit.cli.emit_cmd",
    "edgekit.cli.codegen_cmd",
    "edgekit.cli.verify_cmd",
    "edgekit.cli.compare_cmd",
    "edgekit.cli.search_cmd",
    "edgekit.cli.env_cmd",
]


class _Group(click.Group):
    """Loads sub-commands lazily so `edgekit --help` does not import TensorFlow."""

    def _modules(self) -> dict[str, str]:
        return {m.rsplit(".", 1)[1].removesuffix("_cmd"): m for m in COMMAND_MODULES}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, mod in self._modules().items() if importlib.util.find_spec(mod))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        mod = self._modules().get(name)
        if mod is None or importlib.util.find_spec(mod) is None:
            return None
        return importlib.import_module(mod).command


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekit")
def cli() -> None:
    """edgekit: take a trained model to a verified deployment on an edge board.

    \b
    Typical use:
      edgekit targets                                   # boards edgekit knows
      edgekit build model.keras --target cortex-m4 --calib calib.npz --eval eval.npz
      edgekit build model.keras --target rpi4 --eval eval.npz
      edgekit inspect build/model.tflite                # what is inside a .tflite

    Exit codes: 0 ok, 1 internal error, 2 bad input or usage, 3 over the
    target's budget, 4 unsupported op, 5 conversion failed, 6 verification
    failed, 7 toolchain (compiler, QEMU) missing or failed.
    """


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like KeyboardInterrupt, so every staging folder is removed."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_cli_pid: int | None = None  # the process whose SIGTERM/SIGHUP unwinds the CLI (set by _signals_unwind)


def _terminate(signum: int, frame) -> None:
    if os.getpid() != _cli_pid:
        # a fork of edgekit that inherited the handler (a child between fork and exec, a probe): raising there
        # printed "Exception ignored in: <function _after_fork ...>" and a traceback; it just dies, the CLI cleans up
        os._exit(128 + signum)
    _stop_children()
    raise Terminated(signum)


def _stop_children() -> None:
    """Send SIGTERM to this process's children (arena probes, compilers, QEMU), so none outlives edgekit."""
    try:
        tasks = os.listdir(f"/proc/{os.getpid()}/task")
    except OSError:  # not Linux: the children get SIGHUP/SIGTERM from the terminal or the caller
        return
    for task in tasks:
        try:
            with open(f"/proc/{os.getpid()}/task/{task}/children") as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            continue
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` while the CLI runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _cli_pid
    _cli_pid = os.getpid()
    old = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _one_line(text: str) -> str:
    """``text`` on one line: a newline in a file or tensor name must not start a second message."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return the process exit code.

    SIGTERM and SIGHUP are handled like Ctrl-C: outputs are cleaned up, child
    processes are stopped, and the exit code is 128 + the signal number.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with _signals_unwind():
            cli.main(args=argv, prog_name="edgekit", standalone_mode=False)
        return 0
    except Terminated as exc:
        click.echo(f"edgekit: terminated by {exc}", err=True)
        return 128 + exc.signum
    except EdgekitError as exc:
        click.echo(f"edgekit: error: {_one_line(exc.one_line())}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("edgekit: aborted", err=True)
        return 130
    except KeyboardInterrupt:
        _stop_children()
        click.echo("edgekit: interrupted", err=True)
        return 130
    except Exception as exc:  # a bug in edgekit, not the user's input
        if os.environ.get("EDGEKIT_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        click.echo(
            f"edgekit: internal error: {type(exc).__name__}: {_one_line(first)} "
            "(please report it with the output of `edgekit env`; EDGEKIT_DEBUG=1 shows the traceback)",
            err=True,
        )
        return 1


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
