"""``cadenza``: the entry point and the command tree."""

from __future__ import annotations

import sys

import typer

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
env_app = typer.Typer(rich_markup_mode="markdown", help="Work on a project: residual, distill, run, finetune, train, lora, history.",
                      no_args_is_help=True)

app.command("init", help=init_cmd.init.__doc__)(init_cmd.init)
app.add_typer(env_app, name="env")
env_app.add_typer(residual_cmd.app, name="residual")
env_app.add_typer(distill_cmd.app, name="distill")
env_app.add_typer(lora_cmd.app, name="lora")
mission_cmd.register(env_app)
registry_cmd.register(env_app)


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
        rc = app(standalone_mode=False)  # click returns the code of typer.Exit(code) here
        sys.exit(rc if isinstance(rc, int) else 0)
    except USER_ERRORS as e:
        from rich.markup import escape

        err_console.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)
        sys.exit(exit_code_for(e))
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as e:  # click usage errors (typer >= 0.20 raises its vendored click's exceptions)
        if isinstance(e, _click_exceptions()):
            e.show()
            sys.exit(e.exit_code)
        raise


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
