"""The ``edgekit`` command line: a thin layer over the library.

Each sub-command lives in its own module of this package and exposes a click
command named ``command``. :func:`main` returns an exit code instead of
exiting, so tests call it in-process; library errors become one line on
stderr and the exit code of their class, never a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

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


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return the process exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        cli.main(args=argv, prog_name="edgekit", standalone_mode=False)
        return 0
    except EdgekitError as exc:
        click.echo(f"edgekit: error: {exc.one_line()}", err=True)
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
        click.echo("edgekit: interrupted", err=True)
        return 130
    except Exception as exc:  # a bug in edgekit, not the user's input
        if os.environ.get("EDGEKIT_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        click.echo(
            f"edgekit: internal error: {type(exc).__name__}: {first} "
            "(please report it with the output of `edgekit env`; EDGEKIT_DEBUG=1 shows the traceback)",
            err=True,
        )
        return 1


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
