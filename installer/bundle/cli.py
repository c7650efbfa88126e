"""`gemba bundle`: keygen, build, verify, install, rollback, list (docs/offline.md).

Errors from the bundle modules (BundleError) become GembaError here, so `gemba` prints the
message and `what to do:` and exits with the code errors.py chose.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from appliance.errors import GembaError

from . import minisign, releases
from .errors import SETUP, BundleError
from .offline_cli import default_home, default_root


class _BundleFailure(GembaError):
    kind = "bundle_error"

    def __init__(self, error: BundleError) -> None:
        super().__init__(error.message, error.hint)
        self.exit_code = error.exit_code


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except BundleError as error:
        raise _BundleFailure(error) from None


def _say(message: str) -> None:
    click.echo(message, err=True)


_root = click.option("--root", type=click.Path(path_type=Path), default=None,
                     help="Where releases/ and current live (default: $GEMBA_ROOT or /opt/gemba).")
_trust = click.option("--trust", type=click.Path(path_type=Path, exists=True, dir_okay=False),
                      multiple=True, help="A public key to trust (first install).")


@click.group()
def bundle() -> None:
    """Offline site bundles: build and sign on a connected machine, verify and install offline."""


@bundle.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("."),
              show_default=True, help="Folder for gemba-bundle.key and gemba-bundle.pub.")
@click.option("--force", is_flag=True, help="Replace an existing key pair.")
def keygen(out_dir: Path, force: bool) -> None:
    """Make an Ed25519 signing key pair in minisign's format (unencrypted secret key)."""
    secret_file, public_file = out_dir / "gemba-bundle.key", out_dir / "gemba-bundle.pub"
    if secret_file.exists() and not force:
        raise GembaError(f"{secret_file} exists: a new key would orphan every box that trusts "
                         "the old one", "keep it, or pass --force (docs/offline.md, Keys)")
    out_dir.mkdir(parents=True, exist_ok=True)
    secret = minisign.generate()
    secret_file.touch(mode=0o600)
    secret_file.write_text(secret.to_text(), encoding="utf-8")
    public_file.write_text(secret.public.to_text(), encoding="utf-8")
    click.echo(f"key {secret.public.key_id_hex}: secret {secret_file} (keep it offline, backed "
               f"up), public {public_file} (give it to each site)")


@bundle.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="A new or empty folder for the bundle.")
@click.option("--key", "key_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              required=True, help="The secret key from `gemba bundle keygen`.")
@click.option("--variant", "variants", multiple=True,
              help="llama.cpp build: x86-64, x86-64-v3, cuda (compiled, ~8 min each on 2 "
                   "cores) or NAME=WHEEL for one built before (native=WHEEL: this machine's). "
                   "Repeat; default: x86-64 and x86-64-v3.")
@click.option("--llama-wheel", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="Same as --variant native=WHEEL.")
@click.option("--version", "version", default=None,
              help="Bundle version, dotted numbers (default: gemba's version + UTC minute).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest's summary as JSON.")
def build(out_dir: Path, key_file: Path, variants: tuple[str, ...], llama_wheel: Path | None,
          version: str | None, as_json: bool) -> None:
    """Build a signed bundle: wheels with hashes, llama.cpp per CPU class, models, docs."""
    from .build import STEPS, Plan, default_version, parse_variant
    from .build import build as run_build

    with _errors():
        secret = minisign.parse_secret_key(key_file.read_text(encoding="utf-8"), str(key_file))
        chosen = [parse_variant(v) for v in variants]
        if llama_wheel:
            chosen.append(parse_variant(f"native={llama_wheel}"))
        if not chosen:
            chosen = [parse_variant("x86-64-v3"), parse_variant("x86-64")]
        if version is not None and not version.replace(".", "").isdigit():
            raise BundleError(f"--version {version!r} is not dotted numbers",
                              "e.g. --version 0.1.0.7", SETUP)
        plan = Plan(out_dir.absolute(), secret, chosen, version or default_version())
        with click.progressbar(length=len(STEPS), label="building", file=sys.stderr,
                               item_show_func=lambda s: s, show_eta=False) as bar:
            manifest = run_build(plan, _advance(bar))
            bar.update(1, "done")
    summary = {"out": str(plan.out), "version": manifest["version"],
               "files": len(manifest["files"]),
               "bytes": sum(f["size"] for f in manifest["files"].values()),
               "variants": [v["name"] for v in manifest["variants"]],
               "signed_by": manifest["signed_by"]}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"bundle {summary['version']} in {summary['out']}: {summary['files']} files, "
                   f"{summary['bytes'] / 1e6:.0f} MB, llama.cpp {', '.join(summary['variants'])}, "
                   f"signed by {summary['signed_by']}")


def _advance(bar: Any) -> Callable[[str], None]:
    started = [False]

    def step(label: str) -> None:
        if started[0]:
            bar.update(1, label)
        else:
            bar.update(0, label)
            started[0] = True
    return step


@bundle.command()
@click.argument("path", type=click.Path(path_type=Path, exists=True, file_okay=False))
@_root
@_trust
@click.option("--json", "as_json", is_flag=True)
def verify(path: Path, root: Path | None, trust: tuple[Path, ...], as_json: bool) -> None:
    """Check a bundle's signature and every file; change nothing."""
    from .install import verify_only

    with _errors():
        verified = verify_only(path, root or default_root(), list(trust))
    if as_json:
        click.echo(json.dumps({"version": verified.version, "key_id": verified.key.key_id_hex,
                               "files": len(verified.manifest["files"])}))
    else:
        click.echo(f"bundle {verified.version} verified: signed by key "
                   f"{verified.key.key_id_hex}, {len(verified.manifest['files'])} files intact")


@bundle.command()
@click.argument("path", type=click.Path(path_type=Path, exists=True, file_okay=False))
@_root
@click.option("--home", type=click.Path(path_type=Path), default=None,
              help="The appliance's data folder (default: $GEMBA_HOME or ROOT/home).")
@_trust
def install(path: Path, root: Path | None, home: Path | None, trust: tuple[Path, ...]) -> None:
    """Verify, then install a bundle as a new release and switch `current` to it."""
    from .install import install as run_install

    root = root or default_root()
    with _errors():
        done = run_install(path, root, home or default_home(root), list(trust), _say)
    click.echo(f"installed {done.version} (llama.cpp build {done.variant}); current -> "
               f"{done.version} (was {done.previous or 'none'}) in {done.seconds:.0f} s")


@bundle.command()
@_root
def rollback(root: Path | None) -> None:
    """Switch `current` back to the previous release."""
    with _errors():
        before, after = releases.rollback(root or default_root())
    click.echo(f"current: {before} -> {after}")


@bundle.command("list")
@_root
@click.option("--json", "as_json", is_flag=True)
def list_releases(root: Path | None, as_json: bool) -> None:
    """The releases on this box, oldest first (* = current)."""
    root = root or default_root()
    now = releases.current(root)
    rows = [{**releases.release_info(root, v), "current": v == now}
            for v in releases.installed(root)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        _say(f"no releases in {releases.releases_dir(root)}")
    for row in rows:
        click.echo(f"{'*' if row['current'] else ' '} {row['version']}  "
                   f"{row.get('variant', '?')}  {row.get('installed_utc', '')}")
