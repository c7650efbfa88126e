"""Gemba's field-engineer installer: probe the box, match a firmware profile, plan, commission.

Reached only through `gemba install`; the name is also PyPA's wheel installer, so tests check
that `installer` resolves to this folder.
"""
