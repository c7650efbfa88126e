"""Stop strings over streamed text: what could be the start of one is held back until known."""

from __future__ import annotations


class StopScanner:
    """Holds back text that could be the start of a stop string; reports when one is complete."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = stops
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        if not self._stops:
            return text, False
        buffer = self._held + text
        for stop in self._stops:
            at = buffer.find(stop)
            if at >= 0:
                self._held = ""
                return buffer[:at], True
        keep = max((_overlap(buffer, stop) for stop in self._stops), default=0)
        self._held = buffer[len(buffer) - keep:] if keep else ""
        return buffer[:len(buffer) - keep], False

    def flush(self, text: str) -> str:
        out, self._held = self._held + text, ""
        return out


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of `text` that is a beginning of `stop`."""
    for size in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:size]):
            return size
    return 0
