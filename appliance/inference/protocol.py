"""What the daemon and the engine worker say to each other: plain, picklable, frozen data.

daemon -> worker: Generate, Cancel, Shutdown
worker -> daemon: Ready or LoadFailed once, then per job: Prompt, Piece..., and Finished or Refused
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class EngineConfig:
    """Everything the worker needs to load a verified model."""

    model_id: str
    model_path: str
    model_sha256: str
    n_ctx: int
    """Context window of each slot."""
    n_threads: int
    n_batch: int
    n_gpu_layers: int
    n_ubatch: int = 512
    n_parallel: int = 1
    """Slots: answers decoded together in one batch, each with its own n_ctx of KV cache."""
    kv_cache_type: str = "f16"
    flash_attn: bool = True
    use_mmap: bool = True
    use_mlock: bool = False
    stream_interval_ms: float = 0.0
    """Pieces faster than this are sent together (fewer wake-ups for daemon and clients)."""
    system_prompts: tuple[str, ...] = ()
    """System prompts read into empty slots before the engine reports ready, so the first
    questions that start with them do not read them (as many as there are slots)."""
    fake_script: str | None = None
    """Tests only: a `FakeEngine` script (JSON) answers instead of llama.cpp."""


@dataclass(frozen=True)
class GenerationRequest:
    messages: tuple[dict[str, str], ...]
    max_tokens: int
    temperature: float
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    """OpenAI's penalties, applied by llama.cpp's sampler over the recent tokens: presence
    subtracts this from every token already used, frequency this times its count."""
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    """llama.cpp's multiplicative penalty on recent tokens (1: none)."""
    penalty_last_n: int = 64
    """How many of the answer's latest tokens the penalties look at (0: penalties off)."""
    json: bool = False
    """Constrain the answer to JSON with llama.cpp's JSON grammar."""


@dataclass(frozen=True)
class Generate:
    job_id: int
    request: GenerationRequest


@dataclass(frozen=True)
class Cancel:
    job_id: int


@dataclass(frozen=True)
class Shutdown:
    pass


@dataclass(frozen=True)
class Throttle:
    """The governor's setting: share of full speed (pauses between tokens) and threads."""

    duty: float
    n_threads: int


@dataclass(frozen=True)
class Ready:
    load_s: float
    n_ctx: int


@dataclass(frozen=True)
class LoadFailed:
    message: str


@dataclass(frozen=True)
class Prompt:
    """The prompt was accepted: its length in tokens, and the answer budget left in the context."""

    prompt_tokens: int
    max_tokens: int


@dataclass(frozen=True)
class Piece:
    text: str
    tokens: int = 1
    """How many tokens this piece carries (more than one when pieces are coalesced)."""


@dataclass(frozen=True)
class Finished:
    finish_reason: str
    """`stop` (the model ended), `length` (token limit: incomplete), or `cancelled`."""
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float | None
    decode_s: float
    cached_tokens: int = 0
    """Prompt tokens that were already in the cache (the system prompt, or the conversation's
    earlier turns) and were not read again."""

    @property
    def tok_per_s(self) -> float | None:
        # Decode rate after the first token: prompt reading is in ttft_s.
        if self.completion_tokens < 2 or self.decode_s <= 0:
            return None
        return (self.completion_tokens - 1) / self.decode_s


@dataclass(frozen=True)
class Refused:
    """The engine would not run the request (e.g. the prompt does not fit the context)."""

    kind: str
    message: str
    hint: str


Event = Prompt | Piece | Finished | Refused


class Engine(Protocol):
    """A loaded model with `n_slots` answer slots, decoded together one step at a time.

    `admit` gives a job a free slot (or refuses it); each `step` advances every admitted job by
    one decode (a prompt chunk or one token) and returns what they produced; a job leaves its
    slot with its Finished (or Refused) event, or when cancelled."""

    config: EngineConfig

    @property
    def n_ctx(self) -> int: ...

    @property
    def n_slots(self) -> int: ...

    @property
    def active(self) -> int: ...

    def set_threads(self, n_threads: int) -> None: ...

    def hold(self, system_prompt: str) -> None:
        """Read a system prompt into an empty slot (none left: nothing happens)."""

    def admit(self, job_id: int, request: GenerationRequest) -> Prompt | Refused: ...

    def step(self) -> list[tuple[int, Event]]: ...

    def cancel(self, job_id: int) -> list[Event]:
        """End the job now: its held-back text, then Finished("cancelled") (nothing when the
        job is not in a slot)."""

    def abort_all(self) -> list[int]:
        """Drop every job (a step failed): their ids; the slots are empty again."""


def collect(events: Iterable[Event]) -> tuple[str, Finished | Refused]:
    """A whole answer: its text and its last event."""
    pieces: list[str] = []
    last: Finished | Refused | None = None
    for event in events:
        if isinstance(event, Piece):
            pieces.append(event.text)
        elif isinstance(event, (Finished, Refused)):
            last = event
    if last is None:
        raise RuntimeError("the engine's events ended without Finished or Refused")
    return "".join(pieces), last


def generate(engine: Engine, request: GenerationRequest,
             cancelled: Callable[[], bool]) -> Iterator[Event]:
    """One request alone, from admission to its last event (self-test, burn-in, benchmarks and
    tests of the engine itself); `cancelled` is asked after every step."""
    job_id = -1
    first = engine.admit(job_id, request)
    yield first
    if isinstance(first, Refused):
        return
    while True:
        for _, event in engine.step():
            yield event
            if isinstance(event, (Finished, Refused)):
                return
        if cancelled():
            yield from engine.cancel(job_id)
            return
