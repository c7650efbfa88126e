"""`gemba`: the command group. The only place that turns a GembaError into text and an exit code.

Data goes to stdout, diagnostics and progress to stderr; every reporting command has --json.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

import click

from appliance import __version__
from appliance.config import Paths, Settings, effective_settings, load_settings
from installer.cli import FiniteFloatRange

if TYPE_CHECKING:
    from appliance.client import ApplianceClient

SQLITE_MAX_INT = 2**63 - 1  # conversation ids are SQLite integers


class _Context:
    """Paths and settings, loaded lazily so that `--help` never fails on a bad config."""

    def __init__(self) -> None:
        self.paths = Paths.from_env()
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.paths.config_file)
        return self._settings

    def client(self) -> ApplianceClient:
        """A client of the local daemon, started if none runs: the daemon alone opens the
        database, so no command migrates it under a running daemon."""
        from appliance.client import ApplianceClient
        from appliance.launcher import ensure_daemon

        url = ensure_daemon(self.settings, self.paths, _say, until_ready=False)
        return ApplianceClient(url, self.settings.daemon.api_key)


pass_ctx = click.make_pass_decorator(_Context, ensure=True)


def _say(message: str) -> None:
    click.echo(message, err=True)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@click.group()
@click.version_option(__version__, prog_name="gemba")
def cli() -> None:
    """Gemba: the plant's own LLM appliance, offline on this box."""


# -- daemon --------------------------------------------------------------------------------------
@cli.command()
@click.option("--host", default=None, help="Address to listen on [config daemon.host].")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port to listen on [config daemon.port].")
@click.option("--idle-timeout", type=FiniteFloatRange(min=0.0), default=0.0, show_default=True,
              help="Stop after this many idle seconds (0: never).")
@pass_ctx
def serve(ctx: _Context, host: str | None, port: int | None, idle_timeout: float) -> None:
    """Run the appliance daemon: the model, the API and the store."""
    from appliance.daemon import serve as run_daemon

    daemon = ctx.settings.daemon
    run_daemon(ctx.settings, ctx.paths, host or daemon.host, port or daemon.port, idle_timeout)


@cli.command()
@pass_ctx
def stop(ctx: _Context) -> None:
    """Stop the local daemon (answers in progress are kept as cancelled)."""
    from appliance.launcher import stop_daemon

    _say(stop_daemon(ctx.paths))


@cli.command()
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="Answer length limit.")
@click.option("--temperature", type=FiniteFloatRange(0.0, 2.0), default=None)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=None,
              help="Fixed seed: repeatable.")
@click.option("--operator", default=None, help="Who asks (stored with the question).")
@click.option("--conversation", "conversation_id", type=click.IntRange(1, SQLITE_MAX_INT),
              default=None,
              help="Continue this conversation (see `gemba history`).")
@pass_ctx
def ask(ctx: _Context, question: str, as_json: bool, max_tokens: int | None,
        temperature: float | None, seed: int | None, operator: str | None,
        conversation_id: int | None) -> None:
    """Ask the appliance a QUESTION; the answer streams to stdout. Ctrl-C cancels."""
    from appliance.ask import run_ask

    question = question.strip()
    if not question:
        raise click.UsageError("QUESTION is empty: type the question in quotes")
    result = run_ask(ctx.settings, ctx.paths, question, echo=None if as_json else _write,
                     say=_say, max_tokens=max_tokens, temperature=temperature, seed=seed,
                     operator=operator, conversation_id=conversation_id)
    if as_json:
        _print_json(result)
    elif result["finish_reason"] == "length":
        _say("[answer incomplete: it reached the token limit]")
    if result["finish_reason"] == "cancelled":
        where = result["conversation_id"]
        _say(f"[cancelled; the partial answer is kept in conversation {where}]" if where
             else "[cancelled before the answer began]")
        sys.exit(130)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(ctx: _Context, as_json: bool) -> None:
    """The appliance's state: engine, governor, last telemetry sample and recent events."""
    from appliance.status import read_status, status_lines

    report = read_status(ctx.settings, ctx.paths)
    if as_json:
        _print_json(report)
        return
    for line in status_lines(report):
        click.echo(line)


# -- models --------------------------------------------------------------------------------------
@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models(click_ctx: click.Context, as_json: bool) -> None:
    """List the model catalog and which model files are present."""
    if click_ctx.invoked_subcommand is not None:
        return
    from appliance.models import load_catalog, locate

    ctx = click_ctx.ensure_object(_Context)
    rows = []
    for entry in load_catalog(ctx.paths.models_dir).values():
        path = locate(entry, ctx.paths.models_dir)
        rows.append({**asdict(entry), "present": path is not None,
                     "path": str(path) if path else None,
                     "configured": entry.id == ctx.settings.model.id})
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        mark = "*" if row["configured"] else " "
        where = row["path"] or "MISSING"
        click.echo(f"{mark} {row['id']:<30} {row['quantization']:<7} {row['parameters']:<6} "
                   f"{row['licence']:<11} {where}")
    _say("* = the model the daemon loads (model.id)")


@models.command("verify")
@click.argument("model_id", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def models_verify(ctx: _Context, model_id: str | None, as_json: bool) -> None:
    """Re-hash model files against the catalog's sha256 (all present ones, or MODEL_ID)."""
    from appliance.errors import GembaError
    from appliance.models import get_entry, load_catalog, resolve, verify

    models_dir = ctx.paths.models_dir
    entries = [get_entry(model_id, models_dir)] if model_id else \
        list(load_catalog(models_dir).values())
    results, exit_codes = [], set()
    for entry in entries:
        try:
            path = resolve(entry, models_dir)
            with _progress(f"hashing {entry.file}", as_json) as progress:
                verify(entry, path, progress)
            results.append({"id": entry.id, "ok": True, "path": str(path), "sha256": entry.sha256})
        except GembaError as error:
            exit_codes.add(error.exit_code)
            results.append({"id": entry.id, "ok": False, "error": error.message,
                            "hint": error.hint})
    if as_json:
        _print_json(results)
    else:
        for row in results:
            status = "ok      " if row["ok"] else "FAILED  "
            click.echo(f"{status}{row['id']}: {row.get('path') or row['error']}")
            if not row["ok"] and row.get("hint"):
                click.echo(f"        what to do: {row['hint']}")
    if exit_codes:
        sys.exit(min(exit_codes))  # a damaged file (65) outranks a missing one (66)


class _progress:
    """A byte progress line on stderr (silent with --json or when stderr is not a terminal)."""

    def __init__(self, label: str, quiet: bool) -> None:
        self.label, self.quiet = label, quiet or not sys.stderr.isatty()
        self.bar: Any = None

    def __enter__(self) -> Callable[[int, int], None]:
        return self.update

    def update(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


# -- history -------------------------------------------------------------------------------------
@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--search", default=None, help="Only conversations containing this text.")
@click.pass_context
def history(click_ctx: click.Context, as_json: bool, limit: int, search: str | None) -> None:
    """List past conversations, newest first."""
    if click_ctx.invoked_subcommand is not None:
        return
    from appliance.store.conversations import local_time

    ctx = click_ctx.ensure_object(_Context)
    with closing(ctx.client()) as client:
        rows = client.conversations(limit, search)
    if as_json:
        _print_json(rows)
        return
    if not rows:
        _say("No conversations yet. Ask one with: gemba ask \"…\"")
    for row in rows:
        outcome = row["last_finish_reason"] or "-"
        click.echo(f"{row['id']:>5}  {local_time(row['updated_at'])}  "
                   f"{outcome:<9} {row['operator'] or '':<10} {row['title']}")


@history.command("show")
@click.argument("conversation_id", type=click.IntRange(1, SQLITE_MAX_INT))
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def history_show(ctx: _Context, conversation_id: int, as_json: bool) -> None:
    """Show one conversation with every question and answer."""
    from appliance.store.conversations import local_time

    with closing(ctx.client()) as client:
        conversation = client.conversation(conversation_id)
    if as_json:
        _print_json(conversation)
        return
    click.echo(f"Conversation {conversation['id']}  {local_time(conversation['created_at'])}  "
               f"model {conversation['model_id']}")
    for message in conversation["messages"]:
        label = "Q" if message["role"] == "user" else "A"
        click.echo(f"\n{label}: {message['content']}")
        if message["role"] == "assistant":
            rate = message["tok_per_s"]
            click.echo(f"   [{message['finish_reason']}, {message['completion_tokens']} tokens"
                       + (f", {rate:.1f} tok/s" if rate else "") + "]")
            if message.get("basis") == "none":
                click.echo("   [no basis in the plant documents: refused without the model]")
            for cited in message.get("citations") or []:
                click.echo(f"   [{cited['n']}] relied on {cited['document']} rev "
                           f"{cited['revision']} ({cited['file']})")


# -- config --------------------------------------------------------------------------------------
@cli.group()
def config() -> None:
    """Settings: where they come from and what they are."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def config_show(ctx: _Context, as_json: bool) -> None:
    """Print the effective settings and where each came from."""
    rows = [replace(row, value="***") if row.key == "daemon.api_key" and row.value else row
            for row in effective_settings(ctx.settings, ctx.paths.config_file)]
    paths = {name: str(getattr(ctx.paths, name)) for name in
             ("config_file", "data_dir", "models_dir", "run_dir", "log_dir", "db_file")}
    if as_json:
        _print_json({"paths": paths, "settings": [asdict(row) for row in rows]})
        return
    for name, value in paths.items():
        click.echo(f"{name:<24} {value}")
    click.echo("")
    for row in rows:
        if row.key == "plan.reasons":
            continue  # each planned key shows its own reason below its value
        value = json.dumps(row.value, ensure_ascii=False)
        click.echo(f"{row.key:<32} {value:<24} ({row.source})")
        if row.reason:
            click.echo(f"{'':<32} planned: {row.reason}")


# -- console -------------------------------------------------------------------------------------
@cli.command()
@click.option("--connect", "url", default=None, help="Appliance URL on the plant LAN.")
@click.option("--lang", type=click.Choice(["en", "zh", "ja"]), default=None,
              help="Language of the console  [default: the config's console.lang, else en]")
@click.option("--operator", default=None,
              help="Who is at the console (skips the sign-in form).")
@pass_ctx
def console(ctx: _Context, url: str | None, lang: str | None, operator: str | None) -> None:
    """Open the operator console."""
    from appliance.console.app import run_console

    run_console(ctx.settings, ctx.paths, url, lang, operator)


def main(argv: list[str] | None = None) -> None:
    from appliance.errors import GembaError

    _check_arguments(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=argv, prog_name="gemba", standalone_mode=False)
    except click.exceptions.Abort:
        _say("Aborted.")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _say("Interrupted.")
        sys.exit(130)
    except GembaError as error:
        _say(f"error: {error.message}")
        if error.hint:
            _say(f"  what to do: {error.hint}")
        sys.exit(error.exit_code)
    except BrokenPipeError:
        sys.exit(141)


def _check_arguments(args: list[str]) -> None:
    """Arguments that are not UTF-8 (a terminal set to another encoding, a pasted Shift_JIS
    or GBK file name) arrive as lone surrogates: a usage error, not a traceback later."""
    for n, arg in enumerate(args, 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError as exc:
            raw = arg.encode("utf-8", "surrogateescape")[exc.start:exc.start + 1]
            _say(f"Usage: gemba ...\nError: argument {n} is not UTF-8 text: byte 0x{raw.hex()} "
                 f"at position {exc.start} (the terminal may use another encoding)\n"
                 "  what to do: set the terminal to UTF-8 (e.g. LANG=C.UTF-8 or ja_JP.UTF-8) "
                 "and type the text again")
            sys.exit(2)


def _register_installer() -> None:
    from appliance.audit_cli import audit
    from appliance.docs_cli import docs
    from installer.bundle.cli import bundle
    from installer.cli import install

    cli.add_command(install)
    cli.add_command(bundle)
    cli.add_command(docs)
    cli.add_command(audit)


_register_installer()
