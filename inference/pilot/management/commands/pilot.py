"""``python manage.py pilot``: the pilot workbench for operators and gates.

    pilot configure NAME --model M [--mode hybrid --top-k 8 ...]
    pilot run --golden-set ID|FILE --config NAME --as USER [--judge NAME] [--json]
    pilot compare RUN RUN [...] [--fail-if-worse MEASURE=TOLERANCE ...] [--html F] [--json]
    pilot eval-set scifact|xquad --department D [--limit N]
    pilot floor --golden-set ID --config NAME --as USER [--json] [--record FOLDER]

``run`` queues the run on the answer queue and shows its progress (``--inline`` answers in
this process instead, without workers). ``compare`` exits non-zero when a later run is
worse than the first by more than a tolerance, so a model or setting change that makes
answers worse fails loudly. ``floor`` measures, without the model, which relevance floor
refuses the unanswerable questions and keeps the answerable ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.accounts.models import Department, User
from inference.pilot import actions, compare, floor, goldens, report, runner, workbench
from inference.pilot.models import Configuration, GoldenSetVersion, Run, RunStatus


class Command(BaseCommand):
    help = "Pilot workbench: configurations, runs over golden sets, comparisons and gates."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)

        configure = sub.add_parser("configure", help="create or change a configuration")
        configure.add_argument("name")
        configure.add_argument("--backend", choices=["local", "openai"])
        configure.add_argument(
            "--model", help="catalogue name, GGUF file in the models folder, or the server's model"
        )
        configure.add_argument("--server-url")
        configure.add_argument("--api-key-setting", help="the setting that holds the API key")
        configure.add_argument("--chat-format", choices=["harmony", "template"])
        configure.add_argument(
            "--effort", dest="reasoning_effort", choices=["low", "medium", "high"]
        )
        configure.add_argument(
            "--mode", dest="retrieval_mode", choices=["hybrid", "dense", "fulltext"]
        )
        configure.add_argument("--top-k", type=int)
        configure.add_argument("--reranker", action=argparse.BooleanOptionalAction, default=None)
        configure.add_argument("--context-budget", type=int)
        configure.add_argument("--max-answer-tokens", type=int)
        configure.add_argument("--cost", help="the cost model as JSON (see docs/pilot.md)")

        run = sub.add_parser("run", help="answer a golden set under a configuration")
        run.add_argument(
            "--golden-set", required=True, help="a golden set version id, or a CSV/JSONL file"
        )
        run.add_argument("--config", required=True)
        run.add_argument(
            "--as", dest="as_user", required=True, help="answer as this person would be answered"
        )
        run.add_argument(
            "--judge", help="a configuration that scores answers against expected ones"
        )
        run.add_argument("--name", help="golden set name when --golden-set is a file")
        run.add_argument(
            "--inline", action="store_true", help="answer in this process, not on the answer queue"
        )
        run.add_argument(
            "--measure-overhead",
            action="store_true",
            help="also ask the same questions one by one and report overhead_ratio",
        )
        run.add_argument("--json", action="store_true")
        run.add_argument(
            "--record",
            type=Path,
            metavar="FOLDER",
            help="also write the figures as a dated record there (docs/benchmarks)",
        )

        cmp = sub.add_parser("compare", help="compare runs; the first is the baseline")
        cmp.add_argument("runs", nargs="+", type=int)
        cmp.add_argument(
            "--fail-if-worse", action="append", default=[], metavar="MEASURE=TOLERANCE"
        )
        cmp.add_argument("--html", type=Path, help="write the self-contained HTML report here")
        cmp.add_argument("--csv", type=Path, help="write every question of every run here")
        cmp.add_argument("--json", action="store_true")

        sweep = sub.add_parser(
            "floor", help="how each relevance floor would refuse a golden set's questions"
        )
        sweep.add_argument("--golden-set", required=True, type=int, help="a golden set version id")
        sweep.add_argument("--config", required=True, help="whose retrieval settings to use")
        sweep.add_argument("--as", dest="as_user", required=True)
        sweep.add_argument("--json", action="store_true")
        sweep.add_argument("--record", type=Path, metavar="FOLDER")

        evalset = sub.add_parser(
            "eval-set", help="load SciFact or XQuAD as a collection and a golden set"
        )
        evalset.add_argument("which", choices=["scifact", "xquad"])
        evalset.add_argument("--department", required=True)
        evalset.add_argument("--limit", type=int, default=100)
        evalset.add_argument(
            "--corpus", type=Path, default=settings.BASE_DIR.parent / "shared" / "corpus"
        )
        evalset.add_argument("--unanswerable", type=int, default=50)

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, "_" + options["action"].replace("-", "_"))(options)

    # --- configure ------------------------------------------------------------------------

    def _configure(self, options: dict[str, Any]) -> None:
        fields = {
            key: options[key]
            for key in actions.CONFIGURATION_FIELDS
            if key != "cost" and options.get(key) is not None
        }
        if options.get("cost"):
            try:
                fields["cost"] = json.loads(options["cost"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--cost is not JSON: {exc}") from None
        exists = Configuration.objects.filter(name=options["name"]).exists()
        if not exists and "model" not in fields:
            raise CommandError("A new configuration needs --model.")
        config = actions.save_configuration(None, options["name"], **fields)
        self.stdout.write(json.dumps({"configuration": config.name, **actions.snapshot(config)}))

    # --- run ------------------------------------------------------------------------------

    def _run(self, options: dict[str, Any]) -> None:
        person = _user(options["as_user"])
        config = _configuration(options["config"])
        judge = _configuration(options["judge"]) if options.get("judge") else None
        version = self._golden_version(options["golden_set"], person, options.get("name"))
        # The overhead baseline is taken before and after the run and averaged, so warming
        # up (the model, PostgreSQL's buffers, the page cache) favours neither side.
        inline = options["inline"]
        before = (
            workbench.ask_one_by_one(version, person, inline=inline)
            if options["measure_overhead"]
            else None
        )
        started = time.monotonic()
        run = actions.start_run(None, version, config, person, judge=judge)
        if options["inline"]:
            while runner.step(run.pk) == runner.MORE:
                run.refresh_from_db()
                self._progress(run)
        else:
            self._wait(run)
        run_seconds = time.monotonic() - started
        run.refresh_from_db()
        if run.status != RunStatus.DONE:
            raise CommandError(f"Run {run.pk} ended {run.status}: {run.error or 'see the log'}")
        result = {"run_id": run.pk, **run.measures, "overhead_ratio": None}
        if before is not None:
            after = workbench.ask_one_by_one(version, person, inline=inline)
            baseline = (before + after) / 2
            result["overhead_ratio"] = round(run_seconds / baseline, 4) if baseline else None
            result["run_seconds"] = round(run_seconds, 2)
            result["one_by_one_seconds"] = round(baseline, 2)
            result["one_by_one_seconds_before_and_after"] = [round(before, 2), round(after, 2)]
        if options.get("record"):
            path = workbench.write_record(options["record"], run, result, sys.argv)
            self.stderr.write(f"wrote {path}\n")
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2, ensure_ascii=False))
        else:
            self.stdout.write(workbench.summary_lines(result))

    def _golden_version(self, value: str, person: User, name: str | None) -> GoldenSetVersion:
        if value.isdigit():
            found = GoldenSetVersion.objects.filter(pk=int(value)).first()
            if found is None:
                raise CommandError(f"No golden set version {value}.")
            return found
        path = Path(value)
        if not path.is_file():
            raise CommandError(f"{value} is neither a golden set version id nor a file.")
        parsed = goldens.parse_file(path.name, path.read_bytes())
        if parsed.fatal:
            raise CommandError(parsed.fatal)
        rows, errors = workbench.usable_rows(parsed, person)
        for error in errors:
            self.stderr.write(str(error))
        if not rows:
            raise CommandError("No usable question in the file.")
        department = workbench.home_department(person)
        return actions.create_golden_set(None, name or path.stem, department, rows, note=path.name)

    def _wait(self, run: Run) -> None:
        while True:
            run.refresh_from_db()
            self._progress(run)
            if run.is_final:
                return
            time.sleep(1)

    def _progress(self, run: Run) -> None:
        width = 30
        filled = width * run.done // max(run.total, 1)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {run.done}/{run.total}")
        if run.is_final or run.done >= run.total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    # --- floor ----------------------------------------------------------------------------

    def _floor(self, options: dict[str, Any]) -> None:
        person = _user(options["as_user"])
        config = _configuration(options["config"])
        version = GoldenSetVersion.objects.filter(pk=options["golden_set"]).first()
        if version is None:
            raise CommandError(f"No golden set version {options['golden_set']}.")

        def searched(done: int, total: int) -> None:
            self.stderr.write(f"\rsearched {done}/{total} questions", ending="")
            if done == total:
                self.stderr.write("")

        rows = floor.sweep(floor.score(version, config, person, searched))
        figures = floor.result(version, config, person, rows)
        if options.get("record"):
            command = f"python manage.py {' '.join(sys.argv[1:])}"
            self.stderr.write(f"wrote {floor.write_record(options['record'], figures, command)}\n")
        if options["json"]:
            self.stdout.write(json.dumps(figures, indent=2))
        else:
            self.stdout.write("\n".join(floor.lines(figures)))
            self.stdout.write(f"suggested floor: {figures['suggested_floor']}")

    # --- compare --------------------------------------------------------------------------

    def _compare(self, options: dict[str, Any]) -> None:
        if len(options["runs"]) < 2:
            raise CommandError("Name at least two runs; the first is the baseline.")
        runs = [_run(pk) for pk in options["runs"]]
        comparison = workbench.comparison(runs)
        try:
            tolerances = compare.parse_tolerances(options["fail_if_worse"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        failures = compare.gate(comparison, tolerances)
        if options.get("html"):
            options["html"].write_text(report.html_report(comparison, workbench.runs_meta(runs)))
        if options.get("csv"):
            options["csv"].write_text(report.questions_csv(comparison))
        if options["json"]:
            body = {**comparison.as_dict(), "gate_failures": failures}
            self.stdout.write(json.dumps(body, indent=2, ensure_ascii=False))
        else:
            self.stdout.write(workbench.comparison_lines(comparison))
        if failures:
            raise CommandError("Worse than the baseline:\n" + "\n".join(failures))

    # --- eval-set -------------------------------------------------------------------------

    def _eval_set(self, options: dict[str, Any]) -> None:
        department = Department.objects.filter(name=options["department"]).first()
        if department is None:
            raise CommandError(f"No department called {options['department']!r}.")
        version = workbench.load_eval_set(
            options["which"],
            options["corpus"],
            department,
            limit=options["limit"],
            unanswerable=options["unanswerable"],
            progress=lambda line: self.stderr.write(line),
        )
        self.stdout.write(
            json.dumps({"golden_set_version": version.pk, "questions": version.questions.count()})
        )


def _user(username: str) -> User:
    found = User.objects.filter(username=username, is_active=True).first()
    if found is None:
        raise CommandError(f"No active person called {username!r}.")
    return found


def _configuration(name: str) -> Configuration:
    found = Configuration.objects.filter(name=name).first()
    if found is None:
        raise CommandError(f"No configuration called {name!r}; create it with `pilot configure`.")
    return found


def _run(pk: int) -> Run:
    found = Run.objects.filter(pk=pk).first()
    if found is None:
        raise CommandError(f"No run {pk}.")
    return found
