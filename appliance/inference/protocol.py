"""What the daemon and the engine worker say to each other: plain, picklable, frozen data.

daemon -> worker: Generate, Cancel, Shutdown
worker -> daemon: Ready or LoadFailed once, then per job: Prompt, Piece..., and Finished or Refused
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class EngineConfig:
    """Everything the worker needs to load a verified model."""

    model_id: str
    model_path: str
    model_sha256: str
    n_ctx: int
    n_threads: int
    n_batch: int
    n_gpu_layers: int
    n_ubatch: int = 512
    kv_cache_type: str = "f16"
    flash_attn: bool = False
    use_mmap: bool = True
    use_mlock: bool = False
    stream_interval_ms: float = 0.0
    """Pieces faster than this are sent together (fewer wake-ups for daemon and clients)."""
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
    """A loaded model that turns a request into a stream of events."""

    def generate(self, request: GenerationRequest,
                 cancelled: Callable[[], bool]) -> Iterator[Event]: ...
