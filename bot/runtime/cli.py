"""The `examdesk` command line. Exit 0 when done, 1 when refused or invalid, 2 when a change
needs confirmation (`run` without `--yes`)."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError

from bot.runtime.errors import CliError
from store import clock

EXIT_OK, EXIT_REFUSED, EXIT_CONFIRM = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse exits 2 on bad usage; examdesk promises 1 for anything invalid.
        self.print_usage(sys.stderr)
        self.exit(EXIT_REFUSED, f"examdesk: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="examdesk", description="Keep digital exams running from Slack.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("serve", help="run the bot: Slack, web endpoints, notifier, scheduler")
    sub.add_parser("worker", help="run a notifier worker (more sending capacity)")

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    db_sub.add_parser("upgrade", help="run migrations")

    imp = sub.add_parser("import", help="load or refresh tests or candidates (.csv, .xlsx)")
    imp.add_argument("what", choices=["tests", "candidates"])
    imp.add_argument("file", type=Path)

    staff = sub.add_parser("staff", help="who may do what")
    staff_sub = staff.add_subparsers(dest="staff_command", required=True, parser_class=_Parser)
    add = staff_sub.add_parser("add", help="add or change a user")
    add.add_argument("user", help="Slack user id, e.g. U0123ABCD")
    add.add_argument("--role", required=True, choices=["support", "teacher"])
    add.add_argument("--tests", default="", help="test codes separated by commas")
    add.add_argument(
        "--language",
        choices=["nb", "en"],
        help="the language of their replies (default: their Slack locale, else English)",
    )
    staff_sub.add_parser("list", help="list users and roles")
    remove = staff_sub.add_parser("remove", help="remove a user")
    remove.add_argument("user")

    run = sub.add_parser("run", help="run a slash command from the terminal")
    run.add_argument("--as", dest="actor", required=True, help="Slack user id to act as")
    run.add_argument("--yes", action="store_true", help="confirm a change that asks for it")
    run.add_argument("command_line", metavar='"/command text"')

    status = sub.add_parser("status", help="a test's or a candidate's status")
    status.add_argument("test")
    status.add_argument("candidate", nargs="?")
    status.add_argument("--json", action="store_true", help="JSON for scripts")

    log = sub.add_parser("log", help="the change record of a test or a candidate, oldest first")
    log.add_argument("test")
    log.add_argument("candidate", nargs="?")
    log.add_argument("--json", action="store_true", help="JSON for scripts")

    report = sub.add_parser("report", help="the incident report of a test (CSV, XLSX, JSON)")
    report.add_argument("test")
    report.add_argument("--format", choices=["csv", "xlsx", "json"], default=None)
    report.add_argument("--output", type=Path, help="file to write (default: standard output)")

    _add_reports(sub)

    purge = sub.add_parser(
        "purge", help="erase contact data of tests that ended RETENTION_DAYS ago (retention)"
    )
    purge.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")

    deliver = sub.add_parser("deliver", help="deliver a file on a candidate's behalf (R10)")
    deliver.add_argument("test")
    deliver.add_argument("candidate")
    deliver.add_argument("file", type=Path)
    deliver.add_argument("--as", dest="actor", required=True)
    deliver.add_argument("--reason", default="")

    sub.add_parser("demo", help="load a demo exam day with candidates and staff")

    doctor = sub.add_parser("doctor", help="check the configuration before exam day")
    doctor.add_argument("--json", action="store_true", help="JSON for scripts")
    return parser


def _add_reports(sub: argparse._SubParsersAction) -> None:
    reports = sub.add_parser(
        "reports", help="teachers' error reports and their state; send, edit or reject one"
    )
    reports.add_argument("test", nargs="?", help="only this test's reports")
    reports.add_argument("--json", action="store_true", help="JSON for scripts")
    action = reports.add_mutually_exclusive_group()
    action.add_argument("--send", type=int, metavar="ID", help="send the report's text (R13)")
    action.add_argument("--edit", type=int, metavar="ID", help="change the text before sending")
    action.add_argument("--reject", type=int, metavar="ID", help="decide not to send it")
    reports.add_argument("--as", dest="actor", help="Slack user id to act as (send, edit, reject)")
    reports.add_argument("--yes", action="store_true", help="send without asking first")
    reports.add_argument("--nb", help="with --edit: the Norwegian text")
    reports.add_argument("--en", help="with --edit: the English text")
    reports.add_argument("--question", help="with --edit: the question or task")
    reports.add_argument("--reason", default="", help="with --reject: why")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    long_running = args.command in ("serve", "worker")
    logging.basicConfig(
        level=logging.INFO if long_running else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Alembic lists every plugin it loads at INFO; only the migrations it runs matter.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    try:
        clock.shift()
    except ValueError as error:
        print(f"examdesk: {error}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        return _dispatch(args)
    except CliError as error:
        print(f"examdesk: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "serve": _serve,
        "worker": _worker,
        "db": _db,
        "import": _import,
        "staff": _staff,
        "run": _run,
        "status": _status,
        "deliver": _deliver,
        "log": _log,
        "report": _report,
        "reports": _reports,
        "purge": _purge,
        "demo": _demo,
        "doctor": _doctor,
    }
    return handlers[args.command](args)


# ---------------------------------------------------------------- plumbing


def load_settings():
    from bot.config import Settings

    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors()
        )
        raise CliError(f"configuration is invalid: {problems}") from None


def open_database(settings, *, migrate: bool, checkpoint_apart: bool = False):
    from sqlalchemy import inspect
    from sqlalchemy.exc import OperationalError

    from store import migrate as migrations
    from store.db import make_engine, make_session_factory

    try:
        engine = make_engine(settings.database_url, checkpoint_apart=checkpoint_apart)
        fresh = not inspect(engine).has_table("alembic_version")
        if migrate or fresh:
            migrations.upgrade(engine)
        elif not migrations.is_up_to_date(engine):
            raise CliError(
                "the database schema is older than this examdesk; run `examdesk db upgrade`"
            )
    except OperationalError as error:
        raise CliError(
            f"cannot open the database ({_first_line(error)}); check DATABASE_URL"
        ) from None
    except Exception as error:
        if isinstance(error, CliError):
            raise
        if type(error).__name__ in ("ArgumentError", "NoSuchModuleError"):
            raise CliError(f"DATABASE_URL is not a database URL: {error}") from None
        raise
    return engine, make_session_factory(engine)


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:200]


def _cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


def _with_ctx(settings, factory, actor: str, work: Callable):
    """Run ``work(ctx)`` in one transaction; a refusal rolls back and exits 1."""
    from commands.errors import CommandError
    from commands.runner import in_transaction

    try:
        return in_transaction(
            session_factory=factory,
            actor=actor,
            tz=settings.tz,
            now=clock.now(),
            work=work,
            registry_dir=settings.registry_dir,
            outside=settings.outside,
            via="examdesk",
        )
    except CommandError as error:
        raise CliError(str(error)) from None


# ---------------------------------------------------------------- commands


def _serve(args: argparse.Namespace) -> int:
    from bot.runtime.server import serve

    settings = load_settings()
    engine, factory = open_database(settings, migrate=True, checkpoint_apart=True)
    return serve(settings, engine=engine, session_factory=factory)


def _worker(args: argparse.Namespace) -> int:
    from bot.deps import Deps
    from bot.runtime.background import progress_to_slack
    from bot.slack.client import web_client
    from bot.slack.listeners.question_errors import ProgressReporter
    from bot.slack.outbox_views import RENDERERS
    from notifications.worker import run_worker

    settings = load_settings()
    engine, factory = open_database(settings, migrate=False)
    if settings.slack_bot_token is None:
        return run_worker(settings, engine=engine, session_factory=factory, renderers=RENDERERS)
    # The notices this worker sends show their progress in Slack as serve's do: no provider
    # callback comes for an e-mail, so no serve would update the message after it.
    deps = Deps(settings=settings, engine=engine, session_factory=factory)
    reporter = ProgressReporter(deps, web_client(settings))
    deps.notice_progress = reporter
    try:
        return run_worker(
            settings,
            engine=engine,
            session_factory=factory,
            renderers=RENDERERS,
            on_progress=progress_to_slack(deps),
        )
    finally:
        deps.close()
        reporter.close()


def _db(args: argparse.Namespace) -> int:
    from store import migrate as migrations

    settings = load_settings()
    engine, _ = open_database(settings, migrate=True)
    print(f"Database is at revision {migrations.current_revision(engine)} (latest).")
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
    from commands import registry

    settings = load_settings()
    _, factory = open_database(settings, migrate=False)
    importer = registry.import_tests if args.what == "tests" else registry.import_candidates
    result = _with_ctx(settings, factory, _cli_actor(), lambda ctx: importer(ctx, args.file))
    print(result.summary(str(args.file)))
    return EXIT_OK


def _staff(args: argparse.Namespace) -> int:
    from commands import staff

    settings = load_settings()
    _, factory = open_database(settings, migrate=False)
    if args.staff_command == "add":
        codes = [c.strip() for c in args.tests.split(",") if c.strip()]
        text = _with_ctx(
            settings,
            factory,
            _cli_actor(),
            lambda ctx: staff.add(
                ctx, user_id=args.user, role=args.role, test_codes=codes, language=args.language
            ),
        )
    elif args.staff_command == "remove":
        text = _with_ctx(
            settings, factory, _cli_actor(), lambda ctx: staff.remove(ctx, user_id=args.user)
        )
    else:
        text = _with_ctx(settings, factory, _cli_actor(), staff.listing)
    print(text)
    return EXIT_OK


def _speaking_as(factory, actor: str):
    """Word what follows in the language ``actor`` chose (`staff add --language`), else
    English. The terminal does not ask Slack for their locale: it works without Slack."""
    from commands import staff
    from commands.language import speaking

    return speaking(staff.chosen_language(factory, actor))


def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    _, factory = open_database(settings, migrate=False)
    with _speaking_as(factory, args.actor):
        return _run_as(args, settings, factory)


def _run_as(args: argparse.Namespace, settings, factory) -> int:
    from commands.language import _
    from commands.runner import execute

    reply = execute(
        session_factory=factory,
        actor=args.actor,
        command_line=args.command_line,
        tz=settings.tz,
        now=clock.now(),
        confirmed=args.yes,
        registry_dir=settings.registry_dir,
        outside=settings.outside,
        via="examdesk run",
    )
    if not reply.ok:
        print(reply.text, file=sys.stderr)
        return EXIT_REFUSED
    print(reply.text)
    if reply.data.get("undo_until") is not None:
        from commands.timeparse import format_time

        print(
            _("To undo it until {time}: {command}").format(
                time=format_time(reply.data["undo_until"], settings.tz),
                command=f'examdesk run --as {args.actor} --yes "/undo {reply.data["change_id"]}"',
            )
        )
    if reply.needs_confirmation:
        print(_("Nothing was changed. Run the same command with --yes to apply it."))
        return EXIT_CONFIRM
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from commands import candidate_view, exam_overview
    from commands.lookup import get_candidate, get_candidates, get_test, parse_candidate_number
    from commands.status import candidate_status, test_notices

    settings = load_settings()
    _, factory = open_database(settings, migrate=False)

    def work(ctx) -> str:
        test = get_test(db_session=ctx.db_session, test_code=args.test)
        if args.candidate is not None:
            number = parse_candidate_number(args.candidate)
            candidate = get_candidate(db_session=ctx.db_session, test=test, number=number)
            if args.json:
                return json.dumps(candidate_status(candidate, test, ctx.tz), ensure_ascii=False)
            return candidate_view.card(ctx, test, candidate).text
        if args.json:
            everyone = get_candidates(db_session=ctx.db_session, test=test, numbers=None)
            return json.dumps(
                {
                    "test": test.code,
                    "candidates": [candidate_status(c, test, ctx.tz) for c in everyone],
                    "notices": test_notices(ctx.db_session, test.id, ctx.tz),
                },
                ensure_ascii=False,
            )
        return exam_overview.overview(ctx, test).text

    print(_with_ctx(settings, factory, _cli_actor(), work))
    return EXIT_OK


def _log(args: argparse.Namespace) -> int:
    from commands import history
    from commands.lookup import get_candidate, get_test, parse_candidate_number

    settings = load_settings()
    _, factory = open_database(settings, migrate=False)

    def work(ctx) -> str:
        test = get_test(db_session=ctx.db_session, test_code=args.test)
        number = None
        if args.candidate is not None:
            number = parse_candidate_number(args.candidate)
            get_candidate(db_session=ctx.db_session, test=test, number=number)
        if args.json:
            found = history.entries(ctx.db_session, test, number)
            return json.dumps(
                {
                    "test": test.code,
                    "candidate": number,
                    "changes": [entry.as_json(ctx.tz) for entry in found],
                },
                ensure_ascii=False,
            )
        return history.log_text(ctx.db_session, test, number, ctx.tz)

    print(_with_ctx(settings, factory, _cli_actor(), work))
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from commands import report, report_files
    from commands.lookup import get_test

    fmt = args.format
    if fmt is None:
        suffix = args.output.suffix.lower().lstrip(".") if args.output else ""
        fmt = suffix if suffix in report_files.FORMATS else "csv"
    if fmt == "xlsx" and args.output is None:
        raise CliError(
            f"an XLSX file cannot go to the terminal; add --output {args.test}.xlsx "
            "(or use --format csv or json)"
        )
    settings = load_settings()
    _, factory = open_database(settings, migrate=False)

    def work(ctx) -> bytes:
        test = get_test(db_session=ctx.db_session, test_code=args.test)
        built = report.build(ctx.db_session, test, now=ctx.now)
        if fmt == "json":
            text = json.dumps(report_files.as_json(built, ctx.tz), ensure_ascii=False, indent=2)
            return (text + "\n").encode("utf-8")
        if fmt == "xlsx":
            return report_files.as_xlsx(built, ctx.tz)
        return report_files.as_csv(built, ctx.tz)

    content = _with_ctx(settings, factory, _cli_actor(), work)
    if args.output is None:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        return EXIT_OK
    try:
        args.output.write_bytes(content)
    except OSError as error:
        raise CliError(f"cannot write {args.output} ({error.strerror})") from None
    print(f"Wrote the incident report of {args.test.upper()} to {args.output} ({fmt}).")
    return EXIT_OK


def _reports(args: argparse.Namespace) -> int:
    from commands import question_reports
    from commands.lookup import get_test

    settings = load_settings()
    _, factory = open_database(settings, migrate=False)
    report_id = args.send or args.edit or args.reject
    if report_id is None:

        def listing(ctx) -> str:
            test = get_test(db_session=ctx.db_session, test_code=args.test) if args.test else None
            found = question_reports.reports(ctx.db_session, test_id=test and test.id)
            if args.json:
                return json.dumps(
                    {
                        "test": test and test.code,
                        "reports": [r.as_json(ctx.tz) for r in found],
                    },
                    ensure_ascii=False,
                )
            return question_reports.listing_text(found, ctx.tz, test=test and test.code)

        print(_with_ctx(settings, factory, _cli_actor(), listing))
        return EXIT_OK
    if not args.actor:
        raise CliError("say who acts: add --as USER (a Slack user id of exam support)")
    with _speaking_as(factory, args.actor):
        return _reports_as(args, settings, factory, report_id)


def _reports_as(args: argparse.Namespace, settings, factory, report_id: int) -> int:
    from commands import notice, question_error
    from commands.language import _
    from notifications import fanout
    from store.models import Test

    if args.send is not None:
        if not args.yes:

            def ask(ctx) -> str:
                report = question_error.for_editing(ctx, report_id=report_id)
                test = ctx.db_session.get(Test, question_error.get_report(ctx, report_id).test_id)
                plan = fanout.plan(db_session=ctx.db_session, test=test)
                logged = notice.not_configured(plan, ctx.outside)
                return (
                    _("This sends error report #{id} to the {count} candidates of {test}:").format(
                        id=report_id, count=plan.candidates, test=report["test"]
                    )
                    + f" {notice.counts_text(plan)}"
                    + (f"\n{logged}" if logged else "")
                    + "\n"
                    + _(
                        "It cannot be taken back. Nothing was sent. Run the same command with "
                        "--yes to send it."
                    )
                )

            print(_with_ctx(settings, factory, args.actor, ask))
            return EXIT_CONFIRM
        reply = _with_ctx(
            settings, factory, args.actor, lambda ctx: question_error.send(ctx, report_id=report_id)
        )
        print(reply.text)
        return EXIT_OK
    if args.edit is not None:
        if args.nb is None and args.en is None and args.question is None:
            raise CliError(_("say what changes: --nb TEXT, --en TEXT and/or --question TEXT"))

        def edit(ctx):
            current = question_error.for_editing(ctx, report_id=report_id)
            return question_error.edit(
                ctx,
                report_id=report_id,
                text_nb=current["text_nb"] if args.nb is None else args.nb,
                text_en=current["text_en"] if args.en is None else args.en,
                question=args.question,
                suggested_minutes=current["suggested_minutes"],
            )

        edited = _with_ctx(settings, factory, args.actor, edit)
        print(
            _("Error report #{id} for {test} is edited.").format(id=report_id, test=edited["test"])
        )
        return EXIT_OK
    rejected = _with_ctx(
        settings,
        factory,
        args.actor,
        lambda ctx: question_error.reject(ctx, report_id=report_id, reason=args.reason),
    )
    print(
        _("Error report #{id} for {test} is rejected; nothing is sent.").format(
            id=report_id, test=rejected["test"]
        )
    )
    return EXIT_OK


def _purge(args: argparse.Namespace) -> int:
    from commands import retention

    settings = load_settings()
    _, factory = open_database(settings, migrate=False)
    days = settings.retention_days

    def work(ctx) -> str:
        found = retention.purge(ctx, days=days, dry_run=args.dry_run)
        return retention.summary(found, days=days, dry_run=args.dry_run, tz=ctx.tz)

    print(_with_ctx(settings, factory, _cli_actor(), work))
    return EXIT_OK


def _deliver(args: argparse.Namespace) -> int:
    from commands import delivery

    settings = load_settings()
    _, factory = open_database(settings, migrate=False)
    with _speaking_as(factory, args.actor):
        delivered = _with_ctx(
            settings,
            factory,
            args.actor,
            lambda ctx: delivery.attach_file(
                ctx, test_code=args.test, number=args.candidate, path=args.file, reason=args.reason
            ),
        )
    print(delivered)
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from commands import demo

    settings = load_settings()
    _, factory = open_database(settings, migrate=True)
    print(_with_ctx(settings, factory, _cli_actor(), demo.load))
    return EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    from bot.runtime import doctor

    settings, problems = doctor.load_settings()
    checks = doctor.run(settings, problems)
    print(doctor.as_json(checks) if args.json else doctor.render(checks))
    return EXIT_OK if all(c.ok for c in checks) else EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
