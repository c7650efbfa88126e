"""The bundle's own `python3 install.py` (stdlib-only, argparse): verify, install, rollback.

The same steps as `gemba bundle verify/install/rollback`, for a box that has only Python.
Errors print as `error: ...` and `  what to do: ...` with the exit codes of errors.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import releases
from .errors import BundleError
from .install import install, verify_only


def default_root() -> Path:
    return Path(os.environ.get("GEMBA_ROOT") or "/opt/gemba")


def default_home(root: Path) -> Path:
    return Path(os.environ.get("GEMBA_HOME") or root / "home")


def _parser(bundle: Path) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="install.py", description=f"Verify and install the gemba bundle in {bundle}.")
    parser.add_argument("--root", type=Path, default=None,
                        help="where releases/ and current live (default: $GEMBA_ROOT or "
                             "/opt/gemba)")
    parser.add_argument("--home", type=Path, default=None,
                        help="the appliance's data folder, whose database is backed up "
                             "(default: $GEMBA_HOME or ROOT/home)")
    parser.add_argument("--trust", type=Path, action="append", default=[],
                        help="a public key to trust (first install; carried apart from the "
                             "bundle)")
    parser.add_argument("--verify-only", action="store_true",
                        help="check the signature and every file, change nothing")
    parser.add_argument("--rollback", action="store_true",
                        help="switch current back to the previous release")
    return parser


def main(bundle: Path, argv: list[str] | None = None) -> int:
    options = _parser(bundle).parse_args(argv)
    root = options.root or default_root()
    home = options.home or default_home(root)
    try:
        if options.rollback:
            before, after = releases.rollback(root)
            print(f"current: {before} -> {after}")
        elif options.verify_only:
            verified = verify_only(bundle, root, options.trust)
            print(f"bundle {verified.version} verified: signed by key "
                  f"{verified.key.key_id_hex}, {len(verified.manifest['files'])} files intact")
        else:
            done = install(bundle, root, home, options.trust)
            print(f"installed {done.version} (llama.cpp build {done.variant}) in "
                  f"{root / 'releases' / done.version}; current -> {done.version} "
                  f"(was {done.previous or 'none'}) in {done.seconds:.0f} s")
            print(f"run: {root / 'current' / 'bin' / 'gemba'} ask \"...\"  "
                  f"(with GEMBA_HOME={home})")
    except BundleError as error:
        print(f"error: {error.message}", file=sys.stderr)
        if error.hint:
            print(f"  what to do: {error.hint}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    return 0
