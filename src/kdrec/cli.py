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

    _guard(lambda: report_main(dirs, out))


@app.command("table", context_settings={"allow_extra_args": False, "ignore_unknown_options": True})
def table(name: str = typer.Argument(..., help="a table of conf/table/ (kd_dagfm, rok, topk_ml100k, ...) or a yaml path"),
          overrides: list[str] = typer.Argument(None, help="Hydra overrides applied to every row (part of each job's identity)"),
          workers: int = typer.Option(1, "--workers", "-j", help="jobs run at once"),
          threads: int = typer.Option(0, help="torch threads in all, split between the workers (0: every core)"),
          from_results: bool = typer.Option(False, "--from-results", help="rebuild the table from results/ only: no training, outputs/ not read"),
          seeds: list[str] = typer.Option(None, "--seeds", help="seeds instead of the table's (comma-separated or repeated)"),
          rows: list[str] = typer.Option(None, "--rows", help="only these rows: ids or glob patterns (comma-separated or repeated)"),
          latency: str = typer.Option("missing", help="missing: measure rows without latency; all: measure again; skip"),
          dry_run: bool = typer.Option(False, "--dry-run", help="list each job (done, running elsewhere, to run) and the job-hours left, estimated from each row's finished seeds; run nothing"),
          out: str = typer.Option(None, help="where table.md/.csv and pareto*.png go (default: <outputs>/tables/NAME)"),
          docs: str = typer.Option(None, help="also write the table into this markdown file, between its "
                                              "'<!-- kdrec table NAME -->' and '<!-- /kdrec table NAME -->' lines"),
          verify: str = typer.Option(None, "--verify", metavar="DIR",
                                     help="run the jobs again from scratch under DIR and compare each with its "
                                          "committed result (exit 1 if one differs under the same setup)"),
          park: bool = typer.Option(False, "--park", help="copy each unfinished job's checkpoints in progress "
                                    "into results/ (commit them): the table resumes those jobs from there on "
                                    "any machine; run nothing")) -> None:
    """Run a results table's missing (row, seed) jobs in parallel, then print and write the table."""
    from kdrec.stages.table import run as table_run

    code = _guard(lambda: table_run(name, overrides or [], workers, threads, from_results, seeds, rows,
                                    latency, dry_run, out, docs, verify, park))
    raise typer.Exit(code or 0)


def _guard(fn):
    """One ``kdrec error:`` line and exit code 2 for a user-fixable error (no traceback)."""
    from kdrec.errors import KdrecError

    try:
        return fn()
    except KdrecError as exc:
        from rich.console import Console
        from rich.markup import escape

        # soft_wrap: one line however narrow the terminal (or a pipe's 80 columns)
        Console(stderr=True).print(f"[bold red]kdrec error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        from rich.console import Console

        Console(stderr=True).print("interrupted: jobs in flight were stopped and are not counted as done "
                                   "(a rerun continues them)", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
