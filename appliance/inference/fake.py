"""A scripted engine behind the same protocol as llama.cpp, for tests of what is around it.

The queue, API, console and governor do not need a language model to be tested: they need an
engine that answers at a known pace, refuses, hangs or crashes on cue. `FakeEngine` runs in
the real worker process, so the supervisor, the pipe, cancellation and restarts are the real
ones; only the tokens are scripted. A daemon uses it when `GEMBA_FAKE_ENGINE` holds a script
(JSON; tests only, like `GEMBA_SIMULATED_THERMAL`):

    {"answer": "Check the belt tension.", "tokens_per_s": 200,
     "rules": [{"when": "E-999", "refuse": "prompt_too_long"},
               {"when": "crash", "crash_after": 3}, {"when": "slow", "tokens_per_s": 5}]}

A rule applies when its `when` text is in the last user message; its other keys replace the
script's for that question. Tokens are the answer's words with their trailing space.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any

from appliance.inference.protocol import (
    EngineConfig,
    Event,
    Finished,
    GenerationRequest,
    Piece,
    Prompt,
    Refused,
)

ENV = "GEMBA_FAKE_ENGINE"
_WORD = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True)
class FakeScript:
    answer: str = "Check the belt tension, then reset the alarm."
    tokens_per_s: float = 200.0
    first_token_s: float = 0.0
    """Extra wait before the first token (a long prompt being read)."""
    load_s: float = 0.0
    fail_load: str | None = None
    """Loading fails with this message (a model that does not fit)."""
    refuse: str | None = None
    """Refuse the question with this kind (e.g. prompt_too_long)."""
    crash_after: int | None = None
    """Die after this many tokens, as llama.cpp's abort() kills its process."""
    hang_after: int | None = None
    """Stop answering after this many tokens, cancel or not (a stuck GPU driver)."""
    rules: tuple[dict[str, Any], ...] = field(default=())

    @classmethod
    def parse(cls, text: str) -> FakeScript:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the script must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}; known: {sorted(known)}")
        rules = tuple(data.pop("rules", ()))
        for rule in rules:
            if not isinstance(rule, dict) or "when" not in rule or set(rule) - known - {"when"}:
                raise ValueError(f"a rule needs 'when' and script keys: {rule!r}")
        return cls(**data, rules=rules)

    def for_question(self, text: str) -> FakeScript:
        for rule in self.rules:
            if rule["when"] in text:
                return replace(self, **{k: v for k, v in rule.items() if k != "when"})
        return self


@dataclass(eq=False)
class _FakeJob:
    job_id: int
    script: FakeScript
    tokens: list[str]
    prompt_tokens: int
    max_tokens: int
    started: float
    due: float
    """When its next token is ready: each slot answers at the script's pace, as slots decoded
    in one batch do."""
    count: int = 0
    first_at: float | None = None

    def finished(self, reason: str) -> Finished:
        now = time.perf_counter()
        return Finished(reason, self.prompt_tokens, self.count,
                        None if self.first_at is None else self.first_at - self.started,
                        0.0 if self.first_at is None else now - self.first_at)


class FakeEngine:
    """The `Engine` protocol, scripted. One per worker process, like the real one."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.script = FakeScript.parse(config.fake_script or "{}")
        if self.script.load_s:
            time.sleep(self.script.load_s)
        if self.script.fail_load:
            raise RuntimeError(self.script.fail_load)
        self.n_threads = config.n_threads
        self.jobs: dict[int, _FakeJob] = {}

    @property
    def n_ctx(self) -> int:
        return self.config.n_ctx

    @property
    def n_slots(self) -> int:
        return max(1, self.config.n_parallel)

    @property
    def active(self) -> int:
        return len(self.jobs)

    def hold(self, system_prompt: str) -> None:
        """Nothing to read: a scripted answer has no prompt cache."""

    def set_threads(self, n_threads: int) -> None:
        self.n_threads = n_threads

    def admit(self, job_id: int, request: GenerationRequest) -> Prompt | Refused:
        started = time.perf_counter()
        question = next((m["content"] for m in reversed(request.messages)
                         if m["role"] == "user"), "")
        script = self.script.for_question(question)
        prompt_tokens = sum(len(_WORD.findall(m["content"])) + 4 for m in request.messages)
        if script.refuse:
            return Refused(script.refuse, f"the fake engine refuses: {script.refuse}",
                           "this is a test script")
        if prompt_tokens + 16 > self.n_ctx:
            return Refused("prompt_too_long",
                           f"the prompt is {prompt_tokens} tokens but the context window is "
                           f"{self.n_ctx} tokens", "shorten the question")
        max_tokens = min(request.max_tokens, self.n_ctx - prompt_tokens)
        answer = script.answer
        for stop in request.stop:  # the whole answer is known: cut it at the first stop
            at = answer.find(stop)
            answer = answer[:at] if at >= 0 else answer
        self.jobs[job_id] = _FakeJob(job_id, script, _WORD.findall(answer), prompt_tokens,
                                     max_tokens, started,
                                     started + script.first_token_s + 1.0 / script.tokens_per_s)
        return Prompt(prompt_tokens, max_tokens)

    def step(self) -> list[tuple[int, Event]]:
        """Wait for the next slot's token, then give every slot whose token is due its own."""
        if not self.jobs:
            return []
        wait = min(job.due for job in self.jobs.values()) - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        now = time.perf_counter()
        events: list[tuple[int, Event]] = []
        for job in list(self.jobs.values()):
            if job.due <= now:
                events.extend((job.job_id, event) for event in self._advance(job, now))
        return events

    def _advance(self, job: _FakeJob, now: float) -> list[Event]:
        if job.count == job.script.crash_after:
            os._exit(134)  # what SIGABRT from llama.cpp looks like to the supervisor
        if job.count == job.script.hang_after:
            time.sleep(3600)
        if job.count >= len(job.tokens) or job.count >= job.max_tokens:
            del self.jobs[job.job_id]
            return [job.finished("stop" if job.count >= len(job.tokens) else "length")]
        token = job.tokens[job.count]
        job.count += 1
        job.first_at = job.first_at or now
        job.due = now + 1.0 / job.script.tokens_per_s
        return [Piece(token)]

    def cancel(self, job_id: int) -> list[Event]:
        job = self.jobs.pop(job_id, None)
        return [] if job is None else [job.finished("cancelled")]

    def abort_all(self) -> list[int]:
        ended = list(self.jobs)
        self.jobs.clear()
        return ended
