"""``cadenza env distill PROJECT`` and ``cadenza env distill eval PROJECT``."""

from __future__ import annotations

from typing import Annotated

import typer

from cadenza.cli.common import DefaultCommandGroup, DeviceOpt, ProjectArg, RealOpt, not_built

app = typer.Typer(rich_markup_mode="markdown", cls=DefaultCommandGroup, no_args_is_help=True,
                  help="Distill base+residual into a compact base-free student (fp32 / int8 ONNX), and govern it.")


@app.command("build", hidden=True)
def build(
    project: ProjectArg,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Distillation epochs. [default: 60, distill.epochs]", show_default=False)] = None,
    quantize: Annotated[bool, typer.Option("--quantize", help="Also export an int8 student (ONNX Runtime dynamic quantization).")] = False,
    device: DeviceOpt = "auto",
    real: RealOpt = False,
) -> None:
    """Collect teacher rollouts (DAgger) and train + export the student into PROJECT/student/."""
    not_built("cadenza env distill", 5)


@app.command("eval")
def eval_(
    project: ProjectArg,
    promote: Annotated[bool, typer.Option("--promote", help="Set the student as the baseline if it passes.")] = False,
    real: RealOpt = False,
) -> None:
    """Score the student on gap / success / latency / regression -> DEPLOY | BLOCK | NEEDS_DATA."""
    not_built("cadenza env distill eval", 5)
