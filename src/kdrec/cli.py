"""`kdrec` command line. Each stage forwards its arguments, untouched, to a ``hydra.main`` task, so
Hydra's overrides, ``-m`` sweeps, ``--cfg``, ``-h``, run directories and ``.hydra/`` snapshots all
work as in any Hydra app: ``kdrec distill teacher=dnn student=fm``, ``kdrec distill -m seed=1,2``."""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Knowledge distillation for recommender systems. "
                       "Every stage takes Hydra overrides; `kdrec <stage> -h` lists config groups.")

_HYDRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

STAGES = {
    "pretrain-teacher": ("kdrec.stages.pretrain_teacher", "Pretrain the configured teacher and cache it under its config signature."),
    "distill": ("kdrec.stages.distill", "Distill the teacher into the student (teacher pretrained first if not cached)."),
    "evaluate": ("kdrec.stages.evaluate", "Re-score a finished run (run=<run dir>) on valid and test."),
    "benchmark-flops": ("kdrec.stages.benchmark_flops", "Per-sample FLOPs, parameters and CPU latency of teacher and student."),
    "export": ("kdrec.stages.export", "Export a distill run's student (run=<dir>) as a torch.export program for serving."),
    "data": ("kdrec.stages.data", "Encode the configured dataset (cached) and print a summary."),
}


def _forward(stage: str, ctx: typer.Context) -> None:
    module = importlib.import_module(STAGES[stage][0])
    sys.argv = [f"kdrec-{stage}", *ctx.args]
    module.main()


def _make(stage: str, doc: str):
    def command(ctx: typer.Context) -> None:
        _forward(stage, ctx)

    command.__doc__ = doc + " Arguments are Hydra overrides and flags (-m, --cfg job, -h)."
    return command


for _name, (_module, _doc) in STAGES.items():
    app.command(_name, context_settings=_HYDRA_ARGS, add_help_option=False)(_make(_name, _doc))


@app.command("report")
def report(dirs: list[str] = typer.Argument(..., help="run or sweep directories to collect"),
           out: str = typer.Option(None, help="where to write results.* (default: the first dir)")) -> None:
    """Collect metrics.json of runs/sweeps into one table (mean ± std over seeds)."""
    from kdrec.report.collect import main as report_main

    report_main(dirs, out)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
