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
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import sqlite_utils

from appliance.errors import Busy, EngineError, GembaError, NotReady, RequestError
from appliance.inference.protocol import Finished, GenerationRequest, Piece, Prompt, Refused
from appliance.inference.scheduler import Scheduler
from appliance.inference.supervisor import EngineSupervisor
from appliance.knowledge.answer import (
    grounded_messages,
    model_part,
    passages_text,
    refusal_text,
)
from appliance.knowledge.gate import Evidence, judge
from appliance.knowledge.library import has_documents
from appliance.knowledge.search import search
from appliance.knowledge.text import language_of
from appliance.store import conversations
from appliance.store.audit import AnswerContext
from appliance.store.db import storage_error, write_transaction
from appliance.store.writer import StoreWriter

T = TypeVar("T")
GROUNDED_MAX_TOKENS = 160
"""The model's short answer beside the passages: a sentence or two, never an essay."""


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
    knowledge: str | None = None
    """"off" answers without the plant documents; None follows `[knowledge] mode`."""
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    penalty_last_n: int = 64
    """The penalties against repetition loops (defaults: `[generation]`)."""
    json: bool = False
    """Answer in JSON (OpenAI's response_format json_object): a grammar constrains the model."""

    def generation(self, messages: tuple[dict[str, str], ...],
                   max_tokens: int) -> GenerationRequest:
        """What the engine is asked to do for this question with these messages."""
        return GenerationRequest(messages, max_tokens, self.temperature, self.top_p, self.stop,
                                 self.seed, presence_penalty=self.presence_penalty,
                                 frequency_penalty=self.frequency_penalty,
                                 repeat_penalty=self.repeat_penalty,
                                 penalty_last_n=self.penalty_last_n, json=self.json)

    @property
    def text(self) -> str:
        """The question itself: the last thing the user said."""
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")


@dataclass(frozen=True)
class Accepted:
    conversation_id: int
    prompt_tokens: int
    basis: str | None = None
    citations: tuple[dict[str, Any], ...] = ()
    nearest: tuple[dict[str, Any], ...] = ()
    """With basis none: the closest passages, one per document, for the operator to look at."""


@dataclass(frozen=True)
class Answered:
    conversation_id: int
    message_id: int
    record: conversations.AnswerRecord
    cached_tokens: int = 0
    """Prompt tokens the engine did not read again (the conversation's earlier turns)."""


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
                 system_prompt: str, writer: StoreWriter | None = None,
                 knowledge_mode: str = "grounded",
                 audit: Callable[[], AnswerContext] | None = None) -> None:
        self.db = db
        self.audit = audit
        """The config hash and governor state each answer's audit entry records."""
        self.knowledge_mode = knowledge_mode
        self.writer = writer
        """Every write goes through it (off the event loop); reads use `db`."""
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
            evidence = self._evidence(job.question)
            if evidence is not None:
                await self._answer_grounded(job, state, evidence)
                return
            async with self.scheduler.slot():
                if job.cancel_requested:
                    raise asyncio.CancelledError
                request = job.question.generation(self._messages(job.question),
                                                  job.question.max_tokens)
                async for event in self._engine(job, request):
                    await self._on_event(job, state, event)
        except asyncio.CancelledError:
            # Withdrawn while waiting for the engine (shutdown, or the governor stopped work).
            if state.grounded is not None:
                await self._finish_grounded(job, state, "cancelled")
            else:
                job.events.put_nowait(Failed(NotReady(job.cancel_reason,
                                                         "ask again when the appliance is ready")))
        except GembaError as error:
            await self._fail(job, state, error)
        except sqlite3.Error as error:
            what = "the answer" if state.conversation_id is not None else "your question"
            await self._fail(job, state, storage_error(error, what))
        except Exception as error:  # noqa: BLE001 - a bug here must not kill the daemon
            await self._fail(job, state, EngineError(f"internal error while answering: {error!r}",
                                                     "see the daemon log; report it to support"))
        finally:
            job.done = True
            self.jobs.pop(job.id, None)
            self.last_activity = time.monotonic()

    async def _engine(self, job: AnswerJob,
                      request: GenerationRequest) -> AsyncIterator[object]:
        """The engine's events for this job; whatever ends the loop early (an error, a closed
        generator) ends the job in the engine too."""
        async with aclosing(self.supervisor.generate(request)) as events:
            async for engine_job_id, event in events:
                if job.engine_job_id is None:
                    job.engine_job_id = engine_job_id
                    if job.cancel_requested:
                        self.supervisor.cancel(engine_job_id)
                yield event

    # -- answers from the plant documents -----------------------------------------------------
    def _evidence(self, question: Question) -> Evidence | None:
        """The gate's verdict, or None when this question is plain chat (knowledge off, or no
        documents imported yet)."""
        mode = question.knowledge or self.knowledge_mode
        if mode == "off" or not has_documents(self.db):
            return None
        return judge(question.text, search(self.db, question.text, limit=10))

    async def _answer_grounded(self, job: AnswerJob, state: _Progress,
                               evidence: Evidence) -> None:
        """Refuse without a model call, or show the cited passages at once and let the model
        add a short answer from them alone (withheld when it names anything they lack)."""
        question = job.question
        lang = language_of(question.text)
        state.grounded = grounded = _Grounded.of(evidence)
        state.conversation_id = await self._write(_store_question, question, self.model_id)
        job.events.put_nowait(Accepted(state.conversation_id, 0, evidence.basis,
                                       grounded.citations, grounded.nearest))
        if evidence.basis == "none":
            self._emit(job, state, refusal_text(lang, evidence.nearest))
            await self._finish_grounded(job, state, "stop")
            return
        self._emit(job, state, passages_text(lang, evidence.cited))
        try:
            model_text, finish = await self._short_answer(job, state, lang, evidence)
        except (Busy, EngineError):
            model_text, finish = "", "stop"  # no engine now: the passages are the answer
        if finish != "cancelled":
            part = model_part(lang, model_text, evidence.cited, question.text)
            if part:
                self._emit(job, state, "\n\n" + part)
        await self._finish_grounded(job, state, "cancelled" if finish == "cancelled" else "stop")

    async def _short_answer(self, job: AnswerJob, state: _Progress, lang: str,
                            evidence: Evidence) -> tuple[str, str]:
        """The model's words from the cited passages (not shown until checked), and how its
        generation ended."""
        question = job.question
        messages = grounded_messages(question.text, lang, evidence.cited)
        if messages is None:
            return "", "stop"  # nothing the model may read: the passages stand alone
        async with self.scheduler.slot():
            if job.cancel_requested:
                raise asyncio.CancelledError
            request = question.generation(messages,
                                          min(question.max_tokens, GROUNDED_MAX_TOKENS))
            pieces, finish = [], "stop"
            async for event in self._engine(job, request):
                if isinstance(event, Piece):
                    pieces.append(event.text)
                elif isinstance(event, Finished):
                    finish = event.finish_reason
                    state.tokens = (event.prompt_tokens, event.completion_tokens)
                elif isinstance(event, Refused):
                    pieces.clear()  # e.g. the passages do not fit: they stand alone
        return "".join(pieces), finish

    def _emit(self, job: AnswerJob, state: _Progress, text: str) -> None:
        state.pieces.append(text)
        job.events.put_nowait(Piece(text))

    async def _finish_grounded(self, job: AnswerJob, state: _Progress, finish: str) -> None:
        grounded = state.grounded
        assert grounded is not None and state.conversation_id is not None
        prompt_tokens, completion_tokens = state.tokens
        record = replace(self._record(state, finish, prompt_tokens, completion_tokens, None,
                                      None), basis=grounded.evidence.basis,
                         citations=grounded.citations, nearest=grounded.nearest)
        message_id = await self._write(conversations.add_answer, state.conversation_id, record,
                                       self._audit_context())
        state.stored = True
        job.events.put_nowait(Answered(state.conversation_id, message_id, record))

    def _audit_context(self) -> AnswerContext | None:
        return self.audit() if self.audit is not None else None

    async def _write(self, write: Callable[..., T], *args: Any) -> T:
        if self.writer is None:
            return write(self.db, *args)
        return await self.writer.run(write, *args)

    async def _on_event(self, job: AnswerJob, state: _Progress, event: object) -> None:
        if isinstance(event, Prompt):
            state.conversation_id = await self._write(_store_question, job.question,
                                                      self.model_id)
            job.events.put_nowait(Accepted(state.conversation_id, event.prompt_tokens))
        elif isinstance(event, Piece):
            state.pieces.append(event.text)
            job.events.put_nowait(event)
        elif isinstance(event, Refused):
            error_class = EngineError if event.kind == "engine_error" else RequestError
            await self._fail(job, state, error_class(event.message, event.hint))
        elif isinstance(event, Finished):
            record = self._record(state, event.finish_reason, event.prompt_tokens,
                                  event.completion_tokens, event.ttft_s, event.tok_per_s)
            assert state.conversation_id is not None
            message_id = await self._write(conversations.add_answer, state.conversation_id,
                                           record, self._audit_context())
            state.stored = True
            job.events.put_nowait(Answered(state.conversation_id, message_id, record,
                                           event.cached_tokens))

    async def _fail(self, job: AnswerJob, state: _Progress, error: GembaError) -> None:
        try:
            if state.conversation_id is not None and not state.stored:
                # Keep what the operator already saw, marked as failed.
                record = self._record(state, "error", None, len(state.pieces), None, None)
                await self._write(conversations.add_answer, state.conversation_id, record,
                                  self._audit_context())
                state.stored = True
        except GembaError as storage_failure:
            error = storage_failure
        except sqlite3.Error as storage_failure:
            error = storage_error(storage_failure, "the partial answer")
        finally:
            # Whatever happened to storage, the waiting client always hears the outcome.
            job.events.put_nowait(Failed(error, state.conversation_id))

    def _record(self, state: _Progress, finish_reason: str, prompt_tokens: int | None,
                completion_tokens: int, ttft_s: float | None,
                tok_per_s: float | None) -> conversations.AnswerRecord:
        return conversations.AnswerRecord("".join(state.pieces), finish_reason,
                                          prompt_tokens or 0, completion_tokens, ttft_s,
                                          tok_per_s, self.model_id, self.model_sha256)


def _store_question(db: sqlite_utils.Database, question: Question, model_id: str) -> int:
    """The question, and its conversation when it starts one, in one transaction."""
    text = question.text
    with write_transaction(db):
        conversation_id = question.conversation_id
        if conversation_id is None:
            conversation_id = conversations.start_conversation(db, text, model_id,
                                                               question.operator)
        conversations.add_question(db, conversation_id, text)
    return conversation_id


@dataclass(frozen=True)
class _Grounded:
    """The gate's verdict and its citations, numbered once for the stream and the record."""

    evidence: Evidence
    citations: tuple[dict[str, Any], ...]
    nearest: tuple[dict[str, Any], ...]

    @classmethod
    def of(cls, evidence: Evidence) -> _Grounded:
        return cls(evidence,
                   tuple(hit.citation(n) for n, hit in enumerate(evidence.cited, 1)),
                   tuple(hit.citation(n) for n, hit in enumerate(evidence.nearest, 1)))


@dataclass
class _Progress:
    conversation_id: int | None = None
    pieces: list[str] = field(default_factory=list)
    stored: bool = False
    grounded: _Grounded | None = None
    tokens: tuple[int, int] = (0, 0)
