"""The worker never drops a job: a Generate that arrives while another answer runs waits its turn."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from appliance.inference.protocol import (
    Cancel,
    Finished,
    Generate,
    GenerationRequest,
    Piece,
    Prompt,
    Shutdown,
)
from appliance.inference.worker import serve_jobs


@dataclass(frozen=True)
class _Config:
    n_threads: int = 2
    stream_interval_ms: float = 0.0


class ScriptedEngine:
    """Answers every request with `pieces` numbered pieces, `delay_s` apart; checks cancel."""

    config = _Config()

    def __init__(self, pieces: int = 20, delay_s: float = 0.01) -> None:
        self.pieces, self.delay_s = pieces, delay_s

    def set_threads(self, n_threads: int) -> None:
        pass

    def generate(self, request: GenerationRequest,
                 cancelled: Callable[[], bool]) -> Iterator[object]:
        yield Prompt(3, request.max_tokens)
        done, finish = 0, "length"
        for done in range(1, self.pieces + 1):
            time.sleep(self.delay_s)
            yield Piece(f"{done} ")
            if cancelled():
                finish = "cancelled"
                break
        yield Finished(finish, 3, done, 0.01, 0.1)


def _request() -> GenerationRequest:
    return GenerationRequest(({"role": "user", "content": "hi"},), max_tokens=20, temperature=0)


def _run_worker(engine: ScriptedEngine):  # type: ignore[no-untyped-def]
    parent, child = multiprocessing.Pipe()
    worker = threading.Thread(target=serve_jobs, args=(child, engine), daemon=True)
    worker.start()
    return parent, worker


def _finished(parent, timeout_s: float = 10) -> dict[int, Finished]:  # type: ignore[no-untyped-def]
    ends: dict[int, Finished] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and parent.poll(deadline - time.monotonic()):
        job_id, event = parent.recv()
        if isinstance(event, Finished):
            ends[job_id] = event
    return ends


def test_a_generate_sent_while_a_job_runs_is_answered_after_it() -> None:
    parent, worker = _run_worker(ScriptedEngine())
    parent.send(Generate(1, _request()))
    time.sleep(0.05)
    parent.send(Generate(2, _request()))
    ends = _finished(parent, timeout_s=3)
    assert set(ends) == {1, 2}
    assert ends[1].finish_reason == ends[2].finish_reason == "length"
    parent.send(Shutdown())
    worker.join(timeout=5)
    assert not worker.is_alive()


def test_cancelling_a_job_that_waits_behind_another_ends_it_without_running_it() -> None:
    parent, worker = _run_worker(ScriptedEngine())
    parent.send(Generate(1, _request()))
    time.sleep(0.05)
    parent.send(Generate(2, _request()))
    parent.send(Cancel(2))
    ends = _finished(parent, timeout_s=3)
    assert ends[1].finish_reason == "length"
    assert ends[2].finish_reason == "cancelled" and ends[2].completion_tokens == 0
    parent.send(Shutdown())
    worker.join(timeout=5)
