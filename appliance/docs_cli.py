"""`gemba docs`: the plant's documents, through the daemon (local, or a box on the LAN).

Each file is imported on its own: a file that fails is reported with why and what to do, the
others go on, and the exit code says whether any failed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from appliance.client import ApplianceClient
from appliance.config import Paths, load_settings

_PROGRESS_FROM = 4
"""More files than this get a progress bar (on a terminal, without --json)."""


class _Docs:
    def __init__(self, url: str | None, api_key: str | None) -> None:
        self.url, self.api_key = url, api_key
        self._client: ApplianceClient | None = None

    def client(self) -> ApplianceClient:
        if self._client is None:
            paths = Paths.from_env()
            settings = load_settings(paths.config_file)
            url = self.url
            if url is None:
                from appliance.launcher import ensure_daemon

                url = ensure_daemon(settings, paths, lambda m: click.echo(m, err=True),
                                    until_ready=False)
            self._client = ApplianceClient(url, self.api_key or settings.daemon.api_key)
        return self._client


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@click.group()
@click.option("--connect", "url", default=None,
              help="Appliance URL on the plant LAN (default: the local daemon, started if needed).")
@click.option("--api-key", envvar="GEMBA_API_KEY", default=None,
              help="The appliance's API key [env GEMBA_API_KEY; default: daemon.api_key].")
@click.pass_context
def docs(click_ctx: click.Context, url: str | None, api_key: str | None) -> None:
    """The plant's documents: import, list, show, revisions, remove, search."""
    click_ctx.obj = _Docs(url, api_key)


pass_docs = click.make_pass_decorator(_Docs)


@docs.command("import")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the import report as JSON.")
@pass_docs
def import_(ctx: _Docs, paths: tuple[Path, ...], as_json: bool) -> None:
    """Import files and folders (recursive): PDF, DOCX, XLSX, CSV, Markdown, text."""
    files = sorted(set(_files(paths)))
    if not files:
        raise click.UsageError("no files found in the paths given")
    client = ctx.client()
    results = []
    quiet = as_json or len(files) <= _PROGRESS_FROM or not sys.stderr.isatty()
    with click.progressbar(files, label="Importing", file=sys.stderr,
                           item_show_func=lambda f: f.name if f else "") if not quiet \
            else _plain(files) as bar:
        for file in bar:
            results.append(_import_one(client, file))
            if not as_json and quiet:
                click.echo(_line(results[-1]))
    failed = [r for r in results if r["status"] == "failed"]
    if as_json:
        _echo_json({"files": results, "imported": len(results) - len(failed),
                    "failed": len(failed)})
    elif not quiet:
        for result in results:
            click.echo(_line(result))
    if not as_json:
        click.echo(f"{len(results) - len(failed)} of {len(results)} files imported"
                   + (f"; {len(failed)} failed" if failed else ""), err=True)
    if failed:
        sys.exit(65)


class _plain:
    """The files, without a progress bar."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __enter__(self) -> list[Path]:
        return self.files

    def __exit__(self, *exc: object) -> None:
        pass


def _files(paths: tuple[Path, ...]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            for root, folders, names in os.walk(path):
                folders[:] = sorted(f for f in folders if not f.startswith("."))
                for name in sorted(names):
                    if not name.startswith((".", "~$")):
                        yield Path(root) / name
        else:
            yield path


def _import_one(client: ApplianceClient, file: Path) -> dict[str, Any]:
    try:
        data = file.read_bytes()
    except OSError as exc:
        return {"file": file.name, "path": str(file), "status": "failed",
                "error": {"reason": "unreadable", "message": f"cannot read {file}: {exc.strerror}",
                          "hint": "check the file's permissions"}}
    return {**client.import_document(file.name, data), "path": str(file)}


def _line(result: dict[str, Any]) -> str:
    if result["status"] == "failed":
        error = result["error"] or {}
        return (f"FAILED    {result['file']}: {error.get('message')}\n"
                f"          what to do: {error.get('hint')}")
    facts = [f"rev {result['revision']}", f"{result['chunks']} passages"]
    if result.get("pages"):
        facts.append(f"{result['pages']} pages")
    if result.get("encoding"):
        facts.append(result["encoding"])
    if result.get("flagged_pages"):
        facts.append("pages without text (not searched): "
                     + ", ".join(map(str, result["flagged_pages"])))
    return f"{result['status']:<9} {result['file']} → {result['document']} ({'; '.join(facts)})"


@docs.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_docs
def list_(ctx: _Docs, as_json: bool) -> None:
    """The documents with their current revision."""
    rows = ctx.client().documents()
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("No plant documents yet. Import some with: gemba docs import FOLDER", err=True)
    for row in rows:
        click.echo(f"{row['document']:<24} rev {row['revision']:<5} {row['chunks']:>5} passages  "
                   f"{row['file']}  {row['title']}")


@docs.command("show")
@click.argument("document")
@click.option("--json", "as_json", is_flag=True)
@pass_docs
def show(ctx: _Docs, document: str, as_json: bool) -> None:
    """One document's current revision, passage by passage."""
    data = ctx.client().document(document)
    if as_json:
        _echo_json(data)
        return
    click.echo(f"{data['document']}  rev {data.get('revision')}  {data.get('title')}  "
               f"({data.get('file')})")
    for passage in data["passages"]:
        where = " · ".join(x for x in (passage["section"], passage["page"] and
                                       f"p. {passage['page']}") if x)
        click.echo(f"\n[{passage['id']}] {where}\n{passage['text']}")


@docs.command("revisions")
@click.argument("document")
@click.option("--json", "as_json", is_flag=True)
@pass_docs
def revisions(ctx: _Docs, document: str, as_json: bool) -> None:
    """Every revision of a document; only the current one is searched."""
    rows = ctx.client().revisions(document)
    if as_json:
        _echo_json(rows)
        return
    for row in rows:
        state = "current" if row["current"] else f"superseded {row['superseded_at']}"
        click.echo(f"rev {row['revision']:<5} {row['imported_at']}  {state:<40} {row['file']}")


@docs.command("remove")
@click.argument("document")
@pass_docs
def remove(ctx: _Docs, document: str) -> None:
    """Remove a document with all its revisions (answers already given keep their citations)."""
    result = ctx.client().remove_document(document)
    click.echo(f"removed {result['document']}: {result['revisions_removed']} revisions, "
               f"{result['chunks_removed']} passages")


@docs.command("search")
@click.argument("text")
@click.option("--limit", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_docs
def search(ctx: _Docs, text: str, limit: int, as_json: bool) -> None:
    """Search the current revisions (codes exactly; CJK down to one character)."""
    hits = ctx.client().search(text, limit)
    if as_json:
        _echo_json(hits)
        return
    if not hits:
        click.echo(f"Nothing in the plant documents matches '{text}'.", err=True)
    for hit in hits:
        where = " · ".join(str(x) for x in (hit["document"], f"rev {hit['revision']}",
                                             hit["section"], hit["page"] and f"p. {hit['page']}")
                           if x)
        click.echo(f"[{hit['n']}] {where}\n    " + hit["text"].replace("\n", "\n    "))
