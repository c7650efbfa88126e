"""Stop strings: text that might start a stop string is held back until it is known."""

from __future__ import annotations

import pytest

from appliance.inference.stops import StopScanner


def _run(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    scanner = StopScanner(stops)
    shown = []
    for piece in pieces:
        text, hit = scanner.feed(piece)
        shown.append(text)
        if hit:
            return "".join(shown), True
    shown.append(scanner.flush(""))
    return "".join(shown), False


@pytest.mark.parametrize("stops, pieces, shown, hit", [
    ([], ["belt ", "tension"], "belt tension", False),
    (["END"], ["check ", "the belt", "END", "more"], "check the belt", True),
    (["END"], ["check E", "N", "D after"], "check ", True),        # split across pieces
    (["END"], ["E", "-104 alarm"], "E-104 alarm", False),          # held, then released
    (["<|im_end|>"], ["ok<|im", "_end|>"], "ok", True),
    (["##", "STOP"], ["a#", "b ST", "OP"], "a#b ", True),
    (["停止"], ["ベルトを", "停", "止する"], "ベルトを", True),          # CJK stop string
    (["END"], ["trailing E"], "trailing E", False),                # flushed at the end
])
def test_stop_strings(stops: list[str], pieces: list[str], shown: str, hit: bool) -> None:
    assert _run(stops, pieces) == (shown, hit)
