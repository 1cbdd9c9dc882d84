"""The `distill` command. Thin: parse arguments, call the core, render.

Exit codes: 0 success, 1 the job failed, 2 bad usage or input.
"""

from __future__ import annotations

import typer

from distill.cli import codes, generate, models, runs, serve, train, train_prior

app = typer.Typer(
    name="distill",
    help="Train small generative audio models on your own sounds.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("train")(train.train)
app.command("train-prior")(train_prior.train_prior)
app.command("generate")(generate.generate)
app.command("serve")(serve.serve)
app.add_typer(models.app, name="models")
app.add_typer(runs.app, name="runs")
app.add_typer(codes.app, name="codes")


if __name__ == "__main__":
    app()
