"""Answering a question: queue, engine, history. Front ends see only `AnswerJob` events.

A job runs as its own task, so a client that goes away cancels the answer but never loses it: the
partial text is stored, marked `cancelled`. The question is stored once the engine has accepted
the prompt (a prompt that does not fit leaves history untouched).
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from dataclasses import dataclass, field

import sqlite_utils

from appliance.errors import EngineError, GembaError, RequestError, StorageError
from appliance.inference.protocol import Finished, GenerationRequest, Piece, Prompt, Refused
from appliance.inference.scheduler import Scheduler
from appliance.inference.supervisor import EngineSupervisor
from appliance.store import conversations


@dataclass(frozen=True)
class Question:
    """A chat request as the service takes it (already validated by the API)."""

    messages: tuple[dict[str, str], ...]
    max_tokens: int
    temperature: float
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    conversation_id: int | None = None
    operator: str | None = None


@dataclass(frozen=True)
class Accepted:
    conversation_id: int
    prompt_tokens: int


@dataclass(frozen=True)
class Answered:
    conversation_id: int
    message_id: int
    record: conversations.AnswerRecord


@dataclass(frozen=True)
class Failed:
    error: GembaError
    conversation_id: int | None = None


JobEvent = Accepted | Piece | Answered | Failed


@dataclass(eq=False)
class AnswerJob:
    id: int
    question: Question
    events: asyncio.Queue[JobEvent] = field(default_factory=asyncio.Queue)
    cancel_requested: bool = False
    cancel_reason: str = "the answer was cancelled before it started"
    engine_job_id: int | None = None
    done: bool = False
    task: asyncio.Task[None] | None = None
    _service: ChatService | None = None

    def cancel(self, reason: str | None = None) -> None:
        """Stop generating; whatever was generated is kept, marked cancelled. A job still
        waiting for the engine is withdrawn, and its client is told why."""
        if self.done or self.cancel_requested:
            return
        self.cancel_requested = True
        self.cancel_reason = reason or self.cancel_reason
        if self.engine_job_id is not None and self._service is not None:
            self._service.supervisor.cancel(self.engine_job_id)
        elif self.task is not None:
            self.task.cancel()


class ChatService:
    def __init__(self, db: sqlite_utils.Database, supervisor: EngineSupervisor,
                 scheduler: Scheduler, model_id: str, model_sha256: str,
                 system_prompt: str) -> None:
        self.db = db
        self.supervisor = supervisor
        self.scheduler = scheduler
        self.model_id = model_id
        self.model_sha256 = model_sha256
        self.system_prompt = system_prompt
        self.jobs: dict[int, AnswerJob] = {}
        self.last_activity = time.monotonic()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> bool:
        return bool(self.jobs)

    def touch(self) -> None:
        """Someone is using the appliance (an open console): put off the idle timeout."""
        self.last_activity = time.monotonic()

    def submit(self, question: Question) -> AnswerJob:
        if question.conversation_id is not None:
            conversations.get_conversation(self.db, question.conversation_id)  # NotFound early
        job = AnswerJob(next(self._ids), question, _service=self)
        self.jobs[job.id] = job
        self.last_activity = time.monotonic()
        task = asyncio.get_running_loop().create_task(self._run(job), name=f"answer-{job.id}")
        job.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def stop_all(self, reason: str) -> None:
        """Stop every answer now (the governor's critical state); partial answers are kept."""
        for job in list(self.jobs.values()):
            job.cancel(reason)

    async def drain(self) -> None:
        """Cancel and finish every job (daemon shutdown): partial answers are stored."""
        for job in list(self.jobs.values()):
            job.cancel("the appliance is shutting down")
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _messages(self, question: Question) -> tuple[dict[str, str], ...]:
        if question.messages and question.messages[0].get("role") == "system":
            return question.messages
        return ({"role": "system", "content": self.system_prompt}, *question.messages)

    async def _run(self, job: AnswerJob) -> None:
        state = _Progress()
        try:
            async with self.scheduler.slot():
                if job.cancel_requested:
                    raise asyncio.CancelledError
                request = GenerationRequest(self._messages(job.question), job.question.max_tokens,
                                            job.question.temperature, job.question.top_p,
                                            job.question.stop, job.question.seed)
                async for engine_job_id, event in self.supervisor.generate(request):
                    if job.engine_job_id is None:
                        job.engine_job_id = engine_job_id
                        if job.cancel_requested:
                            self.supervisor.cancel(engine_job_id)
                    self._on_event(job, state, event)
        except asyncio.CancelledError:
            # Withdrawn while waiting for the engine (shutdown, or the governor stopped work).
            job.events.put_nowait(Failed(EngineError(job.cancel_reason,
                                                     "ask again when the appliance is ready")))
        except GembaError as error:
            self._fail(job, state, error)
        except sqlite3.Error as error:
            self._fail(job, state, StorageError(f"storage failed while answering: {error}",
                                                "check the disk (`df -h`) and the daemon log"))
        except Exception as error:  # noqa: BLE001 - a bug here must not kill the daemon
            self._fail(job, state, EngineError(f"internal error while answering: {error!r}",
                                               "see the daemon log; report it to support"))
        finally:
            job.done = True
            self.jobs.pop(job.id, None)
            self.last_activity = time.monotonic()

    def _on_event(self, job: AnswerJob, state: _Progress, event: object) -> None:
        if isinstance(event, Prompt):
            state.conversation_id = self._store_question(job.question)
            job.events.put_nowait(Accepted(state.conversation_id, event.prompt_tokens))
        elif isinstance(event, Piece):
            state.pieces.append(event.text)
            job.events.put_nowait(event)
        elif isinstance(event, Refused):
            error_class = EngineError if event.kind == "engine_error" else RequestError
            self._fail(job, state, error_class(event.message, event.hint))
        elif isinstance(event, Finished):
            record = self._record(state, event.finish_reason, event.prompt_tokens,
                                  event.completion_tokens, event.ttft_s, event.tok_per_s)
            assert state.conversation_id is not None
            message_id = conversations.add_answer(self.db, state.conversation_id, record)
            state.stored = True
            job.events.put_nowait(Answered(state.conversation_id, message_id, record))

    def _fail(self, job: AnswerJob, state: _Progress, error: GembaError) -> None:
        try:
            if state.conversation_id is not None and not state.stored:
                # Keep what the operator already saw, marked as failed.
                record = self._record(state, "error", None, len(state.pieces), None, None)
                conversations.add_answer(self.db, state.conversation_id, record)
                state.stored = True
        except GembaError as storage_error:
            error = storage_error
        finally:
            # Whatever happened to storage, the waiting client always hears the outcome.
            job.events.put_nowait(Failed(error, state.conversation_id))

    def _record(self, state: _Progress, finish_reason: str, prompt_tokens: int | None,
                completion_tokens: int, ttft_s: float | None,
                tok_per_s: float | None) -> conversations.AnswerRecord:
        return conversations.AnswerRecord("".join(state.pieces), finish_reason,
                                          prompt_tokens or 0, completion_tokens, ttft_s,
                                          tok_per_s, self.model_id, self.model_sha256)

    def _store_question(self, question: Question) -> int:
        text = next((m["content"] for m in reversed(question.messages) if m["role"] == "user"), "")
        conversation_id = question.conversation_id
        if conversation_id is None:
            conversation_id = conversations.start_conversation(self.db, text, self.model_id,
                                                               question.operator)
        conversations.add_question(self.db, conversation_id, text)
        return conversation_id


@dataclass
class _Progress:
    conversation_id: int | None = None
    pieces: list[str] = field(default_factory=list)
    stored: bool = False
