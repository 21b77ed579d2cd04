"""``cadenza``: the entry point and the command tree."""

from __future__ import annotations

import functools
import sys
from typing import Any

import typer
import typer.main

from cadenza import __version__
from cadenza.cli import distill_cmd, init_cmd, lora_cmd, mission_cmd, registry_cmd, residual_cmd
from cadenza.cli.common import err_console

app = typer.Typer(rich_markup_mode="markdown",
    name="cadenza",
    help="Learn a small bounded residual on a frozen base policy, govern it, prove it against full RL, "
    "distill it into an onboard student, and improve the mission layer after runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
env_app = typer.Typer(rich_markup_mode="markdown", no_args_is_help=True,
                      help="Work on a project: residual, distill, run, finetune, train, lora, history.")

# Every command module wires itself the same way: ``register(parent)`` adds its commands (or its group).
init_cmd.register(app)
app.add_typer(env_app, name="env")
for module in (residual_cmd, distill_cmd, lora_cmd, mission_cmd, registry_cmd):
    module.register(env_app)


def _version(value: bool) -> None:
    if value:
        print(f"cadenza {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


def main() -> None:
    """Console-script entry point: user errors become one line on stderr and an exit code."""
    from cadenza.errors import USER_ERRORS, exit_code_for

    try:
        rc = _command()(standalone_mode=False)  # click returns the code of typer.Exit(code) here
        sys.exit(rc if isinstance(rc, int) else 0)
    except USER_ERRORS as e:
        _error_line(str(e))
        sys.exit(exit_code_for(e))
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except OSError as e:  # the file system said no (no space, no permission, a name too long): one line too
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        _error_line(f"{e.strerror or e}{where}")
        sys.exit(1)
    except Exception as e:  # click usage errors (typer >= 0.20 raises its vendored click's exceptions)
        if isinstance(e, _click_exceptions()):
            if type(e).__name__ == "NoArgsIsHelpError":
                e.show()  # no arguments at all: the help, as before
            else:
                _error_line(usage_line(e))
            sys.exit(e.exit_code)
        raise


@functools.cache
def _command() -> Any:
    """The click command tree, built once per process (typer would rebuild it, ~60 ms, on every call)."""
    return typer.main.get_command(app)


def _error_line(message: str) -> None:
    from rich.markup import escape

    flat = " ".join(message.split())  # one line, whatever the message holds
    err_console.print(f"[red]error:[/red] {escape(flat)}", soft_wrap=True)


def usage_line(e: Exception) -> str:
    """A click usage error as ``--flag: message (see: cadenza ... --help)``."""
    param = getattr(e, "param", None)
    name = None
    if param is not None:
        if getattr(param, "param_type_name", "") == "argument":
            name = (param.name or "argument").upper()
        else:
            opts = [o for o in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())) if o]
            name = max(opts, key=len) if opts else param.name
    name = name or getattr(e, "option_name", None)
    kind = type(e).__name__
    if kind == "MissingParameter":
        msg = f"missing {getattr(param, 'param_type_name', None) or 'value'}"
    elif kind == "NoSuchOption":
        near = sorted(getattr(e, "possibilities", None) or [])
        msg = "no such option" + (f" (did you mean {', '.join(near)}?)" if near else "")
    elif kind == "BadParameter":
        msg = str(getattr(e, "message", "") or e)
    elif kind == "BadOptionUsage" and name:
        msg = e.format_message().removeprefix(f"Option '{name}' ")  # "requires an argument."
    else:
        msg = e.format_message() if hasattr(e, "format_message") else str(e)
    msg = msg.removeprefix("Value error, ")
    ctx = getattr(e, "ctx", None)
    hint = f" (see: {ctx.command_path} --help)" if ctx is not None and getattr(ctx, "command_path", "") else ""
    return f"{name}: {msg}{hint}" if name else f"{msg}{hint}"


def _click_exceptions() -> tuple[type[Exception], ...]:
    found: list[type[Exception]] = []
    try:
        from typer._click.exceptions import ClickException as VendoredClickException

        found.append(VendoredClickException)
    except ImportError:
        pass
    try:
        from click import ClickException

        found.append(ClickException)
    except ImportError:
        pass
    return tuple(found)


if __name__ == "__main__":
    main()
