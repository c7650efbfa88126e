"""The offline site bundle: build, sign, verify and install it; releases and rollback.

Everything the bundle's own `install.py` needs (ed25519, minisign, manifest, releases, target)
is stdlib-only, because a copy of those modules travels inside the bundle to a box that may have
nothing but Python. `build` and `cli` run on the connected machine and may use anything.
"""
