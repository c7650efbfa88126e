"""The worker never drops a job: a Generate beyond the engine's slots waits its turn; within the
slots, jobs are answered together, and each can be cancelled on its own."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from multiprocessing.connection import Connection

from appliance.inference.fake import FakeEngine
from appliance.inference.protocol import (
    Cancel,
    EngineConfig,
    Finished,
    Generate,
    GenerationRequest,
    Piece,
    Shutdown,
)
from appliance.inference.worker import serve_jobs

ANSWER = " ".join(str(n) for n in range(1, 21))  # 20 tokens, 10 ms apart


def _engine(slots: int) -> FakeEngine:
    script = json.dumps({"answer": ANSWER, "tokens_per_s": 100})
    return FakeEngine(EngineConfig("fake", "/nonexistent", "", n_ctx=512, n_threads=2,
                                   n_batch=512, n_gpu_layers=0, n_parallel=slots,
                                   fake_script=script))


def _request() -> GenerationRequest:
    return GenerationRequest(({"role": "user", "content": "hi"},), max_tokens=20, temperature=0)


def _run_worker(slots: int) -> tuple[Connection, threading.Thread]:
    parent, child = multiprocessing.Pipe()
    worker = threading.Thread(target=serve_jobs, args=(child, _engine(slots)), daemon=True)
    worker.start()
    return parent, worker


def _events(parent: Connection, jobs: int, timeout_s: float = 10) -> list[tuple[int, object]]:
    """Every event until `jobs` jobs have finished, in the order they came."""
    events: list[tuple[int, object]] = []
    deadline = time.monotonic() + timeout_s
    while sum(isinstance(e, Finished) for _, e in events) < jobs \
            and parent.poll(max(0.0, deadline - time.monotonic())):
        events.append(parent.recv())
    return events


def _ends(events: list[tuple[int, object]]) -> dict[int, Finished]:
    return {job: event for job, event in events if isinstance(event, Finished)}


def _stop(parent: Connection, worker: threading.Thread) -> None:
    parent.send(Shutdown())
    worker.join(timeout=5)
    assert not worker.is_alive()


def test_a_generate_beyond_the_slots_is_answered_after_the_running_one() -> None:
    parent, worker = _run_worker(slots=1)
    parent.send(Generate(1, _request()))
    time.sleep(0.05)
    parent.send(Generate(2, _request()))
    events = _events(parent, jobs=2)
    ends = _ends(events)
    assert ends[1].finish_reason == ends[2].finish_reason == "stop"
    assert ends[1].completion_tokens == ends[2].completion_tokens == 20
    order = [job for job, event in events if isinstance(event, (Piece, Finished))]
    assert order.index(2) > order.index(1) + 20  # job 2 began after job 1 ended
    _stop(parent, worker)


def test_jobs_within_the_slots_are_answered_together() -> None:
    parent, worker = _run_worker(slots=2)
    parent.send(Generate(1, _request()))
    time.sleep(0.05)
    parent.send(Generate(2, _request()))
    events = _events(parent, jobs=2)
    ends = _ends(events)
    assert ends[1].completion_tokens == ends[2].completion_tokens == 20
    order = [job for job, event in events if isinstance(event, (Piece, Finished))]
    job_1_ended = len(order) - 1 - order[::-1].index(1)
    assert order.index(2) < job_1_ended  # job 2 did not wait for job 1's end
    text = {job: "".join(e.text for j, e in events if j == job and isinstance(e, Piece))
            for job in (1, 2)}
    assert text[1] == text[2] == ANSWER
    _stop(parent, worker)


def test_cancelling_a_job_that_waits_behind_another_ends_it_without_running_it() -> None:
    parent, worker = _run_worker(slots=1)
    parent.send(Generate(1, _request()))
    time.sleep(0.05)
    parent.send(Generate(2, _request()))
    parent.send(Cancel(2))
    ends = _ends(_events(parent, jobs=2))
    assert ends[1].finish_reason == "stop"
    assert ends[2].finish_reason == "cancelled" and ends[2].completion_tokens == 0
    _stop(parent, worker)


def test_cancelling_one_slot_leaves_the_other_answering() -> None:
    parent, worker = _run_worker(slots=2)
    parent.send(Generate(1, _request()))
    parent.send(Generate(2, _request()))
    time.sleep(0.05)
    parent.send(Cancel(1))
    ends = _ends(_events(parent, jobs=2))
    assert ends[1].finish_reason == "cancelled" and 0 < ends[1].completion_tokens < 20
    assert ends[2].finish_reason == "stop" and ends[2].completion_tokens == 20
    _stop(parent, worker)
