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
from collections.abc import Callable, Iterator
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

    @property
    def n_ctx(self) -> int:
        return self.config.n_ctx

    def set_threads(self, n_threads: int) -> None:
        self.n_threads = n_threads

    def generate(self, request: GenerationRequest,
                 cancelled: Callable[[], bool]) -> Iterator[Event]:
        started = time.perf_counter()
        question = next((m["content"] for m in reversed(request.messages)
                         if m["role"] == "user"), "")
        script = self.script.for_question(question)
        prompt_tokens = sum(len(_WORD.findall(m["content"])) + 4 for m in request.messages)
        if script.refuse:
            yield Refused(script.refuse, f"the fake engine refuses: {script.refuse}",
                          "this is a test script")
            return
        if prompt_tokens + 16 > self.n_ctx:
            yield Refused("prompt_too_long",
                          f"the prompt is {prompt_tokens} tokens but the context window is "
                          f"{self.n_ctx} tokens", "shorten the question")
            return
        max_tokens = min(request.max_tokens, self.n_ctx - prompt_tokens)
        yield Prompt(prompt_tokens, max_tokens)
        time.sleep(script.first_token_s)
        answer = script.answer
        for stop in request.stop:  # the whole answer is known: cut it at the first stop
            at = answer.find(stop)
            answer = answer[:at] if at >= 0 else answer
        tokens = _WORD.findall(answer)
        finish, count, first_at = "stop", 0, None
        for token in tokens:
            if count == script.crash_after:
                os._exit(134)  # what SIGABRT from llama.cpp looks like to the supervisor
            if count == script.hang_after:
                time.sleep(3600)
            if count >= max_tokens:
                finish = "length"
                break
            if cancelled():
                finish = "cancelled"
                break
            time.sleep(1.0 / script.tokens_per_s)
            first_at = first_at or time.perf_counter()
            count += 1
            yield Piece(token)
        ended = time.perf_counter()
        yield Finished(finish, prompt_tokens, count,
                       None if first_at is None else first_at - started,
                       0.0 if first_at is None else ended - first_at)
