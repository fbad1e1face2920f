"""`pitstop`: run a pipeline through Airflow, backfill, audit, gate models, start the UIs.

`pitstop run` executes the pipeline's ingest, features and train DAGs with Airflow's
`dag.test()` (see `pipelines/orchestration/runner.py`); the terminal gets one line per stage and a summary.
`pitstop score` runs the score DAG the same way and prints each day's monitoring verdict.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from pipelines import settings
from pipelines.errors import DataError, SpecError


def _lake() -> Any:
    """The lake the command works on (`PITSTOP_LAKE`), built here at the edge and passed in;
    imported late, as every heavy module of the CLI is."""
    from pipelines import lake

    return lake.from_env()


def print_summary(summary: dict[str, Any], echo: Any) -> None:
    echo("")
    echo(f"pair_id     {summary['pair_id']}")
    echo(f"dataset_id  {summary['dataset_id']}  ({summary['training_set']['rows']} rows)")
    if summary.get("version") is None:
        echo("model       not registered")
        return
    state = "already registered, nothing new" if summary["already_registered"] else "registered"
    echo(f"model       {summary['model_name']} version {summary['version']} ({state})")
    if summary["already_registered"]:
        echo("            the same data, config and code give the same pair_id, "
             "so no new version was made")
    verdict = summary["verdict"] + (f": {summary['rejected_reason']}"
                                    if summary.get("rejected_reason") else "")
    aliases = summary["aliases"]
    echo(f"verdict     {verdict}" + (f"  (alias {', '.join(aliases)})" if aliases else ""))
    echo("metrics     " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(summary["metrics"].items())))
    echo(f"data docs   {_lake().root / summary['data_docs']}")
    echo(f"report      {summary['report']}  (evaluation: plots, slices, problems)")
    echo(f"MLflow UI   {Path(sys.executable).parent / 'mlflow'} ui --backend-store-uri "
         f"{summary['tracking_uri']} "
         "--port 5000   then http://127.0.0.1:5000")
    echo(f"airflow log {summary['log']}")


def audit_command(command: str, ref: str, as_json: bool) -> int:
    """`pitstop trace|verify|reproduce REF`: exit 0 when intact/identical, 1 otherwise."""
    from pipelines import audit
    from pipelines.errors import LineageError

    try:
        if command == "trace":
            if as_json:
                print(json.dumps(audit.trace(ref), indent=2, default=str))
            else:
                print("\n\n".join("\n".join(audit.trace_lines(s)) for s in audit.resolve(ref)))
            return 0
        if command == "verify":
            checked = audit.verify(_lake(), ref)
            lines = [line for v in checked for line in _verification_lines(v)]
            results, ok = [v.to_dict() for v in checked], all(v.intact for v in checked)
        else:
            redone = audit.reproduce(_lake(), ref)
            lines = [line for r in redone for line in _reproduction_lines(r)]
            results, ok = [r.to_dict() for r in redone], all(r.identical for r in redone)
    except (LineageError, DataError, SpecError) as exc:
        print(f"pitstop {command}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(results, indent=2, default=str) if as_json else "\n".join(lines))
    return 0 if ok else 1


def _verification_lines(result: Any) -> list[str]:
    head = f"{result.name} version {result.version}"
    if result.intact:
        return [f"{head}: intact ({result.checked} hashes match what was recorded)"]
    return [f"{head}: NOT intact, {len(result.mismatches)} of {result.checked} hashes differ",
            *(f"  {m.what}: expected {m.expected}, found {m.actual}"
              + (f" (bytes at {m.at})" if m.at else "")
              + (f"\n    {m.republished}" if m.republished else "") for m in result.mismatches)]


def _reproduction_lines(result: Any) -> list[str]:
    verdict = "identical" if result.identical else "DIFFERENT"
    return [f"{result.name} version {result.version}: reproduction {verdict}",
            *(f"  {'ok  ' if passed else 'FAIL'} {check}" for check, passed in result.checks.items()),
            *(f"       {key}: {value}" for key, value in result.details.items())]


def services(args: argparse.Namespace) -> int:
    """`pitstop up` / `pitstop down`: the local UIs (see pipelines/orchestration/local.py)."""
    from pipelines.orchestration import local

    if args.command == "down":
        stopped = local.down()
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        return 0
    try:
        workers = args.workers if args.executor == "celery" else 0
        urls = local.up(Path.cwd(), workers=workers,
                        timeout=local.UP_TIMEOUT if args.timeout is None else args.timeout)
    except RuntimeError as exc:
        print(f"pitstop: {exc}", file=sys.stderr)
        return 1
    print(f"Airflow  {urls['airflow']}")
    print(f"MLflow   {urls['mlflow']}")
    if workers:
        print(f"Celery   {workers} workers ({', '.join(map(local.worker_name, range(1, workers + 1)))}"
              f"), broker Redis at {urls['broker']}")
    known = local.passwords()
    for user, role in local.USERS.items():
        print(f"  {user:<10} {role:<7} password {known.get(user, '(see file below)')}")
    print(f"  {local.SERVICE_ACCOUNT:<10} {'(MLflow)':<7} the tasks' service account; password in "
          f"{local.service_password_file()}")
    print(f"passwords: {local.passwords_file()} (the same in MLflow); logs: "
          f"{settings.home() / 'logs'}; stop with `make down`")
    return 0


def champion_command(args: argparse.Namespace) -> int:
    """`pitstop promote|rollback|history NAME`: move `champion` by hand, with a record."""
    from mlflow.exceptions import MlflowException

    from pipelines import champion
    from pipelines.errors import LineageError

    try:
        if args.command == "history":
            moves = champion.champion_history(args.name)
            if args.json:
                print(json.dumps(moves, indent=2))
                return 0
            for move in moves:
                print(f"{move['at']}  {move['action']:<8} v{move['previous'] or '-'} -> "
                      f"v{move['version']}  by {move['by']}: {move['reason']}")
            return 0
        if args.command == "promote":
            move = champion.promote(args.name, args.version, args.by, args.reason)
        else:
            move = champion.rollback(args.name, args.by, args.reason)
    except (LineageError, MlflowException) as exc:  # e.g. history of an unknown model
        print(f"pitstop {args.command}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name}: champion is now version {move['version']} "
          f"(was {move['previous'] or 'none'}), recorded in the champion history")
    return 0


def problems_command(spec: Any, args: argparse.Namespace) -> None:
    """`pitstop problems add|rescore|list SPEC`: the known-problem regression cases."""
    import tempfile

    from pipelines import lake, problems, registry

    if args.action == "add":
        dataset = args.dataset
        if dataset is None:
            holder = registry.champion_version(spec.pipeline.model_name)
            if holder is None:
                raise DataError("problems add: no champion to take cases from; pass --dataset")
            dataset = holder.tags["dataset_id"]
        store = _lake()
        path = lake.committed_file(lake.pipeline_dir(store, spec.name, "datasets", dataset))
        with tempfile.TemporaryDirectory(prefix="pitstop-problems-") as scratch:
            problem = problems.add_problem(spec, args.name, args.description,
                                           _expected(args.expected), args.where,
                                           store.localized(path, Path(scratch)),
                                           args.tolerance, args.limit, args.order_by,
                                           args.max_error)
        print(f"added problem {problem.name}: {len(problems.read_cases(problem.cases_path))} "
              f"cases in {problem.cases_path}")
    if args.action in ("add", "rescore"):
        for version, name, score in problems.rescore_versions(spec):
            print(f"scored version {version} on {name}: {score:.2f}")
    table = problems.history(spec)
    if args.action == "list" and not table.empty:
        print(table.pivot(index="version", columns="problem", values="score").to_string())


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _expected(text: str | None) -> int | float | str | None:
    """`--expected` as the task needs it: 0/1, a number, or a class name."""
    if text is None:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def doctor_command(args: argparse.Namespace) -> int:
    """`pitstop doctor [--fix]`: exit 1 while something is left that --fix did not clear."""
    from dataclasses import asdict

    from pipelines import doctor
    from pipelines.orchestration.abandoned import dag_run_findings

    before = dt.datetime.now(dt.UTC) - dt.timedelta(hours=args.older_than)
    found = (doctor.examine(_lake(), before, args.fix)
             + dag_run_findings(before, args.fix))
    print(json.dumps([asdict(f) for f in found], indent=2) if args.json
          else "\n".join(doctor.lines(found, args.fix)))
    return 1 if any(not f.action for f in found) else 0


def validate_command(paths: list[Path]) -> int:
    """`pitstop validate SPEC...`: every finding of every spec (`pipelines/validation.py`);
    exit 1 on any error, warnings alone pass."""
    from pipelines import validation
    from pipelines.spec import load_spec

    failed = 0
    for path in paths:
        findings = validation.validate(path)
        for finding in findings:
            print(finding, file=sys.stderr)
        errors = sum(f.severity == "error" for f in findings)
        warned = f", {len(findings) - errors} warning(s)" if len(findings) > errors else ""
        if errors:
            print(f"{path}: INVALID ({errors} error(s){warned})", file=sys.stderr)
            failed += 1
            continue
        spec = load_spec(path, check=False)
        sources, views = len(spec.pipeline.sources), len(spec.pipeline.feature_views)
        print(f"{path}: ok ({spec.pipeline.model.task}, {sources} source{'s' * (sources != 1)}, "
              f"{views} view{'s' * (views != 1)}{warned})")
    return 1 if failed else 0


def _exit_code(exc: BaseException) -> int:
    """128 + the signal's number when a signal stopped the command (as a shell reports a
    process killed by it), else 1."""
    import signal

    from pipelines.orchestration import stopping

    if name := stopping.requested():
        return 128 + signal.Signals[name].value
    return 130 if isinstance(exc, KeyboardInterrupt) else 1


def command_context(reason: str, argv: list[str] | None) -> Any:
    """Who and what produced an output from the command line, as `run_context` says it for a
    task: recorded as `produced_by` in every manifest the command writes."""
    import getpass
    import shlex
    import socket

    from pipelines.provenance import ProducedBy

    words = sys.argv[1:] if argv is None else argv
    return ProducedBy(command=shlex.join(["pitstop", *words]), user=getpass.getuser(),
                      host=socket.gethostname(), triggered_by=getpass.getuser(), reason=reason)


def score_command(spec: Any, args: argparse.Namespace) -> int:
    """`pitstop score SPEC --start D --end D`: each day's monitoring verdict, one line each
    (or JSON); exit 1 when a day breached its limits or failed."""
    from dataclasses import asdict

    from pipelines.orchestration.runner import score_pipeline

    echo = (lambda line: print(line, file=sys.stderr)) if args.json else print
    end = args.end or args.start + dt.timedelta(days=1)
    verdicts, failure, log_file = score_pipeline(_lake(), spec, args.start, end, echo)
    if args.json:
        print(json.dumps({"days": [asdict(v) for v in verdicts], "failure": failure,
                          "log": str(log_file)}, indent=2, default=str))
    else:
        echo("")
        for verdict in verdicts:
            echo(verdict.line())
        echo(f"airflow log {log_file}")
    if failure:
        print(f"pitstop: {failure}", file=sys.stderr)
    return 1 if failure else 0


def spec_command(args: argparse.Namespace, argv: list[str] | None) -> int:
    """`run`, `score`, `backfill` and `problems`: the commands that act on one spec."""
    from pipelines.spec import load_spec

    try:
        spec = load_spec(args.spec)
        if args.command == "run":
            echo = (lambda line: print(line, file=sys.stderr)) if args.json else print
            start = args.start or spec.pipeline.start_date
            end = args.end or start + dt.timedelta(days=28)
            from pipelines.orchestration.runner import run_pipeline

            summary = run_pipeline(spec, start, end, args.reason, echo, args.eval_start,
                                   args.force)
            if args.json:
                print(json.dumps(summary, indent=2, default=str))
            else:
                print_summary(summary, echo)
        elif args.command == "score":
            return score_command(spec, args)
        elif args.command == "problems":
            problems_command(spec, args)
        elif args.command == "backfill":
            from pipelines import skipping
            from pipelines.backfill import backfill as run_backfill

            views = args.views.split(",") if args.views else None
            results = run_backfill(_lake(), spec, args.start, args.end, views,
                                   produced_by=command_context(args.reason, argv),
                                   force=args.force)
            print(f"backfilled {sum(r.rows for r in results)} feature rows in "
                  f"{sum(r.partitions for r in results)} partitions: "
                  + skipping.describe(skipping.merge_tallies(r.tally for r in results)))
    except (DataError, SpecError, RuntimeError, KeyboardInterrupt) as exc:
        print(f"pitstop: {exc or 'interrupted'}", file=sys.stderr)
        return _exit_code(exc)
    return 0


def _add_force(*commands: argparse.ArgumentParser) -> None:
    for command in commands:
        command.add_argument("--force", action="store_true",
                             help="recompute partitions whose inputs, definition and code are "
                             "unchanged (by default they are skipped)")


def _spec_parsers(commands: Any) -> None:
    """`run`, `score`, `backfill` and `problems`: the commands that act on one spec."""
    run = commands.add_parser("run", help="ingest, compute features and train through Airflow")
    run.add_argument("spec", type=Path)
    run.add_argument("--start", type=_date)
    run.add_argument("--end", type=_date, help="exclusive")
    run.add_argument("--eval-start", type=_date,
                     help="first day of the evaluation window (default: the last eval_days)")
    run.add_argument("--reason", default="pitstop run")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    score = commands.add_parser("score", help="score days with the champion through Airflow, "
                                "and print each day's monitoring verdict")
    score.add_argument("spec", type=Path)
    score.add_argument("--start", type=_date, required=True)
    score.add_argument("--end", type=_date, help="exclusive (default: the day after --start)")
    score.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    backfill = commands.add_parser("backfill", help="recompute feature partitions for a range")
    backfill.add_argument("spec", type=Path)
    backfill.add_argument("--start", type=_date, required=True)
    backfill.add_argument("--end", type=_date, required=True, help="exclusive")
    backfill.add_argument("--views", help="comma-separated feature views (default: all)")
    _add_force(run, backfill)
    backfill.add_argument("--reason", required=True,
                          help="why the range is recomputed (kept in every manifest written)")
    problems = commands.add_parser("problems", help="known-problem regression cases")
    problems.add_argument("action", choices=["add", "rescore", "list"])
    problems.add_argument("spec", type=Path)
    problems.add_argument("--name", help="add: the problem's name")
    problems.add_argument("--description", default="", help="add: what goes wrong")
    problems.add_argument("--expected", help="add: the right outcome: 0/1 (binary), a class "
                          "(multiclass), a value (regression; default: each case's target)")
    problems.add_argument("--max-error", type=float,
                          help="add, regression: how far from expected a prediction may be")
    problems.add_argument("--where", help="add: SQL filter over the training set's columns")
    problems.add_argument("--order-by", help="add: SQL order of the candidates (default: entity)")
    problems.add_argument("--limit", type=int, default=15, help="add: cases to keep (10-15)")
    problems.add_argument("--tolerance", type=float, default=0.0,
                          help="add: allowed drop in score against the champion")
    problems.add_argument("--dataset", help="add: dataset_id to select from (default: champion's)")


def _version_parsers(commands: Any) -> None:
    """The auditor's commands and the champion's moves: they act on model versions."""
    import getpass

    for name, text in (("trace", "show what a model version was made from"),
                       ("verify", "re-hash everything a model version was made from"),
                       ("reproduce", "rebuild the training set and refit; compare")):
        audit = commands.add_parser(name, help=text)
        audit.add_argument("ref", help="NAME@ALIAS, NAME/VERSION, a pair_id or a dataset_id")
        audit.add_argument("--json", action="store_true", help="print the result as JSON")
    promote = commands.add_parser("promote", help="make a model version champion by hand")
    promote.add_argument("name", help="registered model name")
    promote.add_argument("version")
    rollback = commands.add_parser("rollback", help="give champion back to the previous holder")
    rollback.add_argument("name", help="registered model name")
    for moving in (promote, rollback):
        moving.add_argument("--reason", required=True, help="why; kept in the champion history")
        moving.add_argument("--by", default=getpass.getuser(), help="who (default: you)")
    history = commands.add_parser("history", help="every move of champion: who, when, why")
    history.add_argument("name", help="registered model name")
    history.add_argument("--json", action="store_true")


def _other_parsers(commands: Any) -> None:
    """Checking and scaffolding specs, and the local services."""
    from pipelines import scaffold

    validate = commands.add_parser("validate", help="check specs before anything runs")
    validate.add_argument("specs", type=Path, nargs="+")
    new = commands.add_parser("new", help="scaffold a pipeline that runs on generated data")
    new.add_argument("name", help="the pipeline's name, a lowercase Python identifier")
    new.add_argument("--dags", type=Path, default=Path("dags"), help="its folder (default: dags)")
    new.add_argument("--task", choices=sorted(scaffold.TASKS), default="binary")
    doctor = commands.add_parser("doctor", help="find (--fix: clear) what killed writers left")
    doctor.add_argument("--fix", action="store_true", help="remove leftovers, fail stale runs")
    doctor.add_argument("--json", action="store_true")
    doctor.add_argument("--older-than", type=float, default=2.0, metavar="HOURS",
                        help="runs started longer ago are abandoned, and so are uncommitted "
                        "generations last written longer ago on an object-store lake "
                        "(default 2: the default execution_timeout)")
    up = commands.add_parser("up", help="start the Airflow and MLflow UIs on 127.0.0.1")
    up.add_argument("--executor", choices=("local", "celery"), default="local",
                    help="local: the scheduler runs tasks; celery: Celery workers do, with Redis "
                    "as the broker (PITSTOP_REDIS_URL names an existing one)")
    up.add_argument("--workers", type=int, default=None, metavar="N",
                    help="Celery workers to start (with --executor celery; default 2)")
    up.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                    help="how long to wait for each service to answer (default "
                    "PITSTOP_UP_TIMEOUT, else 300)")
    commands.add_parser("down", help="stop what `pitstop up` started")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pitstop", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_spec_parsers, _version_parsers, _other_parsers):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipelines import scaffold

    settings.tune_garbage_collector()
    cli = parser()
    args = cli.parse_args(argv)

    if args.command == "up":
        if args.workers is not None and (args.executor != "celery" or args.workers < 1):
            cli.error("--workers N needs --executor celery and N >= 1")
        args.workers = 2 if args.workers is None else args.workers
    if args.command in ("up", "down"):
        return services(args)
    if args.command == "validate":
        return validate_command(args.specs)
    if args.command == "new":
        return scaffold.new_command(args.name, args.dags, args.task)
    if args.command == "doctor":
        return doctor_command(args)
    if args.command in ("trace", "verify", "reproduce"):
        return audit_command(args.command, args.ref, args.json)
    if args.command in ("promote", "rollback", "history"):
        return champion_command(args)
    if args.command == "problems" and args.action == "add" and None in (args.name, args.where):
        cli.error("problems add needs --name and --where")

    from pipelines.orchestration.stopping import stop_on_signals

    # before anything starts a thread: see pipelines/orchestration/stopping.py
    with stop_on_signals() if args.command in ("run", "score", "backfill") else contextlib.nullcontext():
        return spec_command(args, argv)


if __name__ == "__main__":
    sys.exit(main())
