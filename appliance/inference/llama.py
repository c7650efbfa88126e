"""The llama.cpp engine: the only module that imports `llama_cpp`.

It runs inside the worker process. llama-cpp-python's `LlamaModel` loads the weights and
vocabulary; the context, the batch and the decode loop are ours, on llama.cpp's C API. The
context has `n_parallel` sequences, one per answer slot, each with its own KV cache of `n_ctx`
tokens (`kv_unified` off: a slot's cells sit where they would sit alone, so batching never
changes an answer). Each `step` is one `llama_decode` of one `llama_batch` carrying every
answering slot's next token, then one of the oldest unread prompt's next chunk, alone; each
answering slot's own `llama_sampler` chain (penalties, top-k, top-p, min-p, temperature,
seeded distribution, or greedy) picks its token inside llama.cpp, so no logits are copied into
Python. In JSON mode llama.cpp's grammar is asked about the picked token only; it filters the
whole vocabulary (then copied once, by numpy) only when it refuses that token. Tokens are
counted, timed and detokenized incrementally.

A slot keeps its tokens after its answer: the next turn of that conversation (a prompt that
starts with the slot's whole previous prompt) reads only what is new. A new conversation reuses
only its system prompt: a prompt is always read in the same chunks, its leading system
messages first, then the rest, so the system part's cache is the same in every slot that read
it, and a slot that holds it lends a copy to the next prompt that starts with it. The same
question at temperature 0 gets the same answer whenever it is asked, in whatever slot.

The chat template is the model's own (GGUF metadata), rendered by llama-cpp-python's sandboxed
Jinja formatter.
"""

from __future__ import annotations

import codecs
import ctypes
import itertools
import math
import time
from dataclasses import dataclass, field

import llama_cpp
import numpy as np
from jinja2 import TemplateError
from llama_cpp._internals import LlamaModel
from llama_cpp._logger import set_verbose
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import JSON_GBNF

from appliance.inference.protocol import (
    EngineConfig,
    Event,
    Finished,
    GenerationRequest,
    Piece,
    Prompt,
    Refused,
)
from appliance.inference.stops import StopScanner

# Tokens always left free for the answer when a prompt is checked against the context.
_MIN_ANSWER_TOKENS = 16
_KV_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0,
             "q4_0": llama_cpp.GGML_TYPE_Q4_0}
# The sampling that Llama.generate used (and llama.cpp's defaults) above temperature 0.
_TOP_K = 40
_MIN_P = 0.05
# Windows up to this long get the penalties' shortcut (see _shortlist).
_SHORTLIST_MAX_WINDOW = 512
# A shorter system prompt is read with the rest: a copy of a slot's cache would cost more.
_MIN_PREFIX_TOKENS = 16


@dataclass(eq=False)
class _Job:
    """One answer in a slot: its prompt still to read, its sampler, and what it produced."""

    job_id: int
    request: GenerationRequest
    prompt: list[int]
    prefix: int
    """Leading system-message tokens, read as a chunk of their own (0: no such split)."""
    read: int
    """Prompt tokens already in the slot's cache (a follow-up starts past its earlier turns)."""
    max_tokens: int
    sampler: llama_cpp.llama_sampler_p
    grammar: llama_cpp.llama_sampler_p | None
    """JSON mode's grammar, kept out of the chain (see LlamaEngine._sample_constrained)."""
    stops: StopScanner
    text: _Detokenizer
    started: float
    cached: int = 0
    """Prompt tokens the slot already held when the job came."""
    order: int = 0
    """Admission order: prompts are read oldest first."""
    next_token: int | None = None
    """Sampled, sent, and still to be decoded into the cache."""
    completion_tokens: int = 0
    first_at: float | None = None

    def finished(self, reason: str) -> list[Event]:
        events: list[Event] = []
        tail = self.stops.flush(self.text.flush())
        if tail:
            events.append(Piece(tail))
        now = time.perf_counter()
        events.append(Finished(reason, len(self.prompt), self.completion_tokens,
                               None if self.first_at is None else self.first_at - self.started,
                               0.0 if self.first_at is None else now - self.first_at,
                               self.cached))
        return events


@dataclass(eq=False)
class _Slot:
    seq: int
    held: list[int] = field(default_factory=list)
    """The tokens in this sequence's KV cache, in position order."""
    held_prompt: int = 0
    """How many of them were the last job's prompt."""
    prefix: int = 0
    """The first chunk the cache was read in, when it was a system prefix (else 0)."""
    prefix_read_s: float = 0.0
    """How long reading that prefix took (where it was read, copies included)."""
    job: _Job | None = None
    used_at: float = 0.0


class LlamaEngine:
    """One loaded model; not thread-safe, so exactly one per worker process."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        set_verbose(False)
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = config.n_gpu_layers
        params.use_mmap, params.use_mlock = config.use_mmap, config.use_mlock
        self._model = LlamaModel(path_model=config.model_path, params=params, verbose=False)
        self._vocab = self._model.vocab
        self._formatter = self._chat_formatter(add_generation_prompt=True)
        self._prefix_formatter = self._chat_formatter(add_generation_prompt=False)
        slots = max(1, config.n_parallel)
        context = llama_cpp.llama_context_default_params()
        context.n_ctx = config.n_ctx * slots
        context.n_seq_max = slots
        context.kv_unified = False
        context.n_batch = config.n_batch
        context.n_ubatch = min(config.n_batch, config.n_ubatch)
        context.n_threads = context.n_threads_batch = config.n_threads
        context.type_k = context.type_v = _KV_TYPES[config.kv_cache_type]
        context.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if config.flash_attn
                                   else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        self._ctx = llama_cpp.llama_init_from_model(self._model.model, context)
        if not self._ctx:
            self._model.close()
            raise ValueError(f"llama.cpp could not create its context ({slots} x "
                             f"{config.n_ctx:,} tokens)")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._n_ctx = llama_cpp.llama_n_ctx_seq(self._ctx)
        self._n_batch = llama_cpp.llama_n_batch(self._ctx)
        self._n_vocab = self._model.n_vocab()
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        self._candidates = _Candidates(self._n_vocab)
        self._one = _Candidates(1)
        self._slots = [_Slot(seq) for seq in range(slots)]
        self._admitted = itertools.count()
        self._copy_s = self._time_a_copy() if slots > 1 else math.inf

    def close(self) -> None:
        if self._ctx:
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
            self._model.close()

    def _chat_formatter(self, add_generation_prompt: bool) -> Jinja2ChatFormatter:
        model = self._model
        template = model.metadata().get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{self.config.model_path} has no chat template in its metadata")

        def token_text(token_id: int) -> str:
            return model.token_get_text(token_id) if token_id != -1 else ""

        return Jinja2ChatFormatter(template=template, eos_token=token_text(model.token_eos()),
                                   bos_token=token_text(model.token_bos()),
                                   add_generation_prompt=add_generation_prompt,
                                   stop_token_ids=[model.token_eos()])

    @property
    def n_ctx(self) -> int:
        """Context window of each slot."""
        return self._n_ctx

    @property
    def n_slots(self) -> int:
        return len(self._slots)

    @property
    def active(self) -> int:
        return sum(slot.job is not None for slot in self._slots)

    def set_threads(self, n_threads: int) -> None:
        """Change decoding threads on the live context (used by the governor)."""
        llama_cpp.llama_set_n_threads(self._ctx, n_threads, n_threads)

    def tokenize_chat(self, messages: list[dict[str, str]]) -> tuple[list[int], list[str]]:
        formatted = self._formatter(messages=messages)
        tokens = self._model.tokenize(formatted.prompt.encode("utf-8"),
                                      add_bos=not formatted.added_special, special=True)
        stops = formatted.stop if isinstance(formatted.stop, list) else \
            [formatted.stop] if formatted.stop else []
        return tokens, stops

    def system_prefix(self, messages: list[dict[str, str]], prompt: list[int]) -> int:
        """How many of the prompt's first tokens are its leading system messages, as the
        template renders them alone; 0 when there are none, they are short, or the template
        renders them differently without what follows."""
        lead = list(itertools.takewhile(lambda m: m.get("role") == "system", messages))
        if not lead or len(lead) == len(messages):
            return 0
        try:
            formatted = self._prefix_formatter(messages=lead)
        except (TemplateError, ValueError, TypeError):
            return 0  # a template that insists on a user turn
        tokens = self._model.tokenize(formatted.prompt.encode("utf-8"),
                                      add_bos=not formatted.added_special, special=True)
        size = len(tokens)
        if size < _MIN_PREFIX_TOKENS or size >= len(prompt) or prompt[:size] != tokens:
            return 0
        return size

    # -- jobs --------------------------------------------------------------------------------
    def admit(self, job_id: int, request: GenerationRequest) -> Prompt | Refused:
        """Give the job a slot; the caller admits no more jobs than there are slots."""
        started = time.perf_counter()
        messages = list(request.messages)
        prompt, template_stops = self.tokenize_chat(messages)
        room = self._n_ctx - len(prompt)
        if room < _MIN_ANSWER_TOKENS:
            return Refused(
                "prompt_too_long",
                f"the prompt is {len(prompt)} tokens but the context window is "
                f"{self._n_ctx} tokens (at least {_MIN_ANSWER_TOKENS} must stay free for the "
                "answer)",
                "shorten the question or start a new conversation; an engineer can raise "
                "model.n_ctx if memory allows",
            )
        prefix = self.system_prefix(messages, prompt)
        slot, kept = self._slot_for(prompt, prefix)
        max_tokens = min(request.max_tokens, room)
        slot.job = _Job(job_id, request, prompt, prefix, kept, max_tokens,
                        sampler_chain(request, self._n_vocab),
                        llama_cpp.llama_sampler_init_grammar(
                            self._vocab, JSON_GBNF.encode("utf-8"), b"root")
                        if request.json else None,
                        StopScanner([s for s in (*request.stop, *template_stops) if s]),
                        _Detokenizer(self._vocab), started, cached=kept,
                        order=next(self._admitted))
        return Prompt(len(prompt), max_tokens)

    def hold(self, system_prompt: str) -> None:
        """Read a system prompt into an empty slot, as a question's first chunk is read, so the
        first question that starts with it does not read it. Never empties a slot."""
        messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": "?"}]
        prompt, _ = self.tokenize_chat(messages)
        prefix = self.system_prefix(messages, prompt)
        empty = [slot for slot in self._slots if slot.job is None and not slot.held]
        if not prefix or not empty or any(self._holds_prefix(slot, prompt, prefix)
                                          for slot in self._slots):
            return
        slot = empty[0]
        slot.prefix, slot.prefix_read_s = prefix, 0.0
        for start in range(0, prefix, self._n_batch):
            slot.prefix_read_s += self._read(slot, prompt[start:min(start + self._n_batch, prefix)],
                                             last_logits=False)

    def _slot_for(self, prompt: list[int], prefix: int) -> tuple[_Slot, int]:
        """A free slot, and how many of the prompt's tokens its cache already holds.

        The slot that holds this conversation's earlier turns (this prompt is its whole previous
        prompt and more) keeps them; otherwise the least recently used free slot is emptied but
        for the prompt's system prefix, if it holds it (the same prompt again gets the same
        answer: nothing after the prefix is reused)."""
        free = [slot for slot in self._slots if slot.job is None]
        if not free:
            raise RuntimeError("no free slot: the worker admits at most n_parallel jobs")
        for slot in free:
            if 0 < slot.held_prompt < len(prompt) \
                    and prompt[:slot.held_prompt] == slot.held[:slot.held_prompt]:
                kept = min(_common_prefix(slot.held, prompt), len(prompt) - 1)
                self._forget(slot, kept)
                return slot, kept
        slot = min(free, key=lambda s: s.used_at)
        kept = prefix if self._holds_prefix(slot, prompt, prefix) else 0
        self._forget(slot, kept)
        return slot, kept

    @staticmethod
    def _holds_prefix(slot: _Slot, prompt: list[int], prefix: int) -> bool:
        return prefix > 0 and slot.prefix == prefix and slot.held[:prefix] == prompt[:prefix]

    def _forget(self, slot: _Slot, keep: int) -> None:
        """Drop the slot's cache from position `keep` on."""
        if len(slot.held) > keep:
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, keep, -1)
            del slot.held[keep:]
        slot.held_prompt = 0
        if keep < slot.prefix:
            slot.prefix = 0

    def _borrow_prefix(self, slot: _Slot, job: _Job) -> None:
        """Copy the job's system prefix from a slot that holds it, when a copy is quicker than
        reading it (as measured here: the prefix's own reading, and a copy at start-up).

        llama.cpp copies a whole stream between slots (their caches are apart), then the copy
        is cut back to the prefix: about 13 ms for 2,048 tokens of context on 2 cores, against
        150-500 ms to read a system prompt. A very long context and a short system prompt can
        turn that around."""
        for other in self._slots:
            if other is not slot and self._holds_prefix(other, job.prompt, job.prefix) \
                    and other.prefix_read_s > self._copy_s:
                llama_cpp.llama_memory_seq_cp(self._memory, other.seq, slot.seq, -1, -1)
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, job.prefix, -1)
                slot.held = other.held[:job.prefix]
                slot.prefix = job.read = job.cached = job.prefix
                slot.prefix_read_s = other.prefix_read_s
                return

    def _time_a_copy(self) -> float:
        """Seconds llama.cpp takes to copy one slot's cache to another: a one-token decode after
        a copy, less one without (the copy runs inside the next decode)."""
        token = self._model.token_bos() if self._model.token_bos() >= 0 else 0
        timings = []
        for copy in (False, True, False, True):
            if copy:
                llama_cpp.llama_memory_seq_cp(self._memory, 0, 1, -1, -1)
            self._put(0, token, 0, 1, False)
            started = time.perf_counter()
            self._decode(1)
            timings.append(time.perf_counter() - started)
            llama_cpp.llama_memory_seq_rm(self._memory, 1, 0, -1)
        return max(0.0, min(timings[1], timings[3]) - min(timings[0], timings[2]))

    def cancel(self, job_id: int) -> list[Event]:
        for slot in self._slots:
            if slot.job is not None and slot.job.job_id == job_id:
                return self._end(slot, "cancelled")
        return []

    def abort_all(self) -> list[int]:
        ended = []
        for slot in self._slots:
            if slot.job is not None:
                ended.append(slot.job.job_id)
                _free_samplers(slot.job)
                slot.job = None
            self._forget(slot, 0)
        return ended

    def _end(self, slot: _Slot, reason: str) -> list[Event]:
        job = slot.job
        assert job is not None
        _free_samplers(job)
        slot.job = None
        slot.used_at = time.monotonic()
        if job.read < len(job.prompt):
            self._forget(slot, 0)  # cancelled while reading: the cache is not a whole prompt
        else:
            slot.held_prompt = len(job.prompt)
        return job.finished(reason)

    # -- decoding ----------------------------------------------------------------------------
    def step(self) -> list[tuple[int, Event]]:
        """One step for every busy slot: a `llama_decode` of the answering slots' next tokens
        together, then one of the oldest unread prompt's next chunk; the events, by job.

        Prompts are never read in the same batch as other slots' tokens, and always in the
        same chunks (the system prefix, then n_batch tokens at a time): llama.cpp computes a
        large batch with other kernels than a token or two, and the rounding would change the
        answer."""
        events: list[tuple[int, Event]] = []
        answering = [slot for slot in self._slots
                     if slot.job is not None and slot.job.next_token is not None]
        if answering:
            count = 0
            for slot in answering:
                job = slot.job
                assert job is not None and job.next_token is not None
                self._put(count, job.next_token, len(slot.held), slot.seq, True)
                slot.held.append(job.next_token)
                job.next_token = None
                count += 1
            self._decode(count)
            for index, slot in enumerate(answering):
                events.extend(self._sample(slot, index))
        reading = [slot for slot in self._slots
                   if slot.job is not None and slot.job.read < len(slot.job.prompt)]
        if reading:
            slot = min(reading, key=lambda s: s.job.order if s.job else 0)
            job = slot.job
            assert job is not None
            if job.read == 0:
                slot.prefix, slot.prefix_read_s = job.prefix, 0.0
                if job.prefix:
                    self._borrow_prefix(slot, job)
            end = job.read + self._n_batch
            in_prefix = job.read < job.prefix
            if in_prefix:
                end = min(end, job.prefix)
            chunk = job.prompt[job.read:end]
            job.read += len(chunk)
            last = job.read == len(job.prompt)
            seconds = self._read(slot, chunk, last_logits=last)
            if in_prefix:
                slot.prefix_read_s += seconds
            if last:
                events.extend(self._sample(slot, len(chunk) - 1))
        return events

    def _read(self, slot: _Slot, chunk: list[int], last_logits: bool) -> float:
        """Decode prompt tokens into the slot's cache after what it holds; the seconds taken."""
        for index, token in enumerate(chunk):
            self._put(index, token, len(slot.held), slot.seq, False)
            slot.held.append(token)
        self._batch.logits[len(chunk) - 1] = last_logits
        started = time.perf_counter()
        self._decode(len(chunk))
        return time.perf_counter() - started

    def _decode(self, count: int) -> None:
        self._batch.n_tokens = count
        status = llama_cpp.llama_decode(self._ctx, self._batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")

    def _sample(self, slot: _Slot, index: int) -> list[tuple[int, Event]]:
        job = slot.job
        assert job is not None
        if job.grammar is None:
            token = llama_cpp.llama_sampler_sample(job.sampler, self._ctx, index)
        else:
            token = self._sample_constrained(job.sampler, job.grammar, index)
        return [(job.job_id, event) for event in self._take(slot, job, token)]

    def _sample_constrained(self, chain: llama_cpp.llama_sampler_p,
                            grammar: llama_cpp.llama_sampler_p, index: int) -> int:
        """A token the grammar allows, checking the grammar on one token, not on every entry of
        the vocabulary (llama.cpp's grammar sampler costs milliseconds over 49,152 entries).

        The chain picks freely; when the grammar allows that token it is the token the chain
        picks from the allowed ones too (greedy: the best allowed is the best; sampling: a
        rejected draw is drawn again from the allowed ones, which is the same distribution).
        Otherwise the grammar filters the whole vocabulary and the chain picks again, as
        llama.cpp's own server does."""
        logits = llama_cpp.llama_get_logits_ith(self._ctx, index)
        token = self._candidates.pick(chain, logits)
        if not self._one.allows(grammar, token):
            self._candidates.fill(logits)
            llama_cpp.llama_sampler_apply(grammar, self._candidates.pointer)
            token = self._candidates.pick(chain, None)
        llama_cpp.llama_sampler_accept(grammar, token)
        llama_cpp.llama_sampler_accept(chain, token)
        return token

    def _put(self, index: int, token: int, pos: int, seq: int, logits: bool) -> None:
        batch = self._batch
        batch.token[index] = token
        batch.pos[index] = pos
        batch.n_seq_id[index] = 1
        batch.seq_id[index][0] = seq
        batch.logits[index] = logits

    def _take(self, slot: _Slot, job: _Job, token: int) -> list[Event]:
        """The sampled token's text, and the end of the job when it ends it."""
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            return self._end(slot, "stop")
        job.completion_tokens += 1
        if job.first_at is None:
            job.first_at = time.perf_counter()
        piece, hit = job.stops.feed(job.text.piece(token))
        events: list[Event] = [Piece(piece)] if piece else []
        if hit:
            return events + self._end(slot, "stop")
        if job.completion_tokens >= job.max_tokens:
            return events + self._end(slot, "length")
        job.next_token = token
        return events


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _free_samplers(job: _Job) -> None:
    llama_cpp.llama_sampler_free(job.sampler)
    if job.grammar is not None:
        llama_cpp.llama_sampler_free(job.grammar)


class _Candidates:
    """A llama_token_data_array over the vocabulary in memory of our own, filled from a
    slot's logits with one numpy copy (no Python loop), for samplers applied one by one."""

    _DTYPE = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])

    def __init__(self, size: int) -> None:
        self._size = size
        self._data = (llama_cpp.llama_token_data * size)()
        self._view = np.frombuffer(self._data, dtype=self._DTYPE)
        self._ids = np.arange(size, dtype=np.int32)
        self._array = llama_cpp.llama_token_data_array(self._data, size, -1, False)
        self.pointer = ctypes.pointer(self._array)

    def fill(self, logits: ctypes._Pointer[ctypes.c_float] | None) -> None:
        """Every token with its logit (samplers sort and cut the array in place)."""
        view = self._view
        view["id"] = self._ids
        if logits is not None:
            view["logit"] = np.ctypeslib.as_array(logits, shape=(self._size,))
        view["p"] = 0.0
        self._array.size, self._array.selected, self._array.sorted = self._size, -1, False

    def pick(self, chain: llama_cpp.llama_sampler_p,
             logits: ctypes._Pointer[ctypes.c_float] | None) -> int:
        """The chain's token: over fresh logits, or (None) over the array as it stands."""
        if logits is not None:
            self.fill(logits)
        llama_cpp.llama_sampler_apply(chain, self.pointer)
        return int(self._data[self._array.selected].id)

    def allows(self, grammar: llama_cpp.llama_sampler_p, token: int) -> bool:
        """Whether the grammar lets `token` come next (a one-entry array)."""
        entry = self._data[0]
        entry.id, entry.logit, entry.p = token, 0.0, 0.0
        self._array.size, self._array.selected, self._array.sorted = 1, -1, False
        llama_cpp.llama_sampler_apply(grammar, self.pointer)
        return not math.isinf(self._data[0].logit)


def sampler_chain(request: GenerationRequest, n_vocab: int) -> llama_cpp.llama_sampler_p:
    """The request's sampling as one llama.cpp chain; the caller frees it (llama_sampler_free).
    JSON mode's grammar is a sampler of its own (LlamaEngine._sample_constrained).

    Penalties see only the answer's tokens (the chain accepts each sampled token), never the
    prompt: a grounded answer has to repeat its passages' words. Temperature 0 is greedy."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

    def add(sampler: llama_cpp.llama_sampler_p) -> None:
        llama_cpp.llama_sampler_chain_add(chain, sampler)

    if _penalised(request):
        shortlist = _shortlist(request)
        if shortlist:
            add(llama_cpp.llama_sampler_init_top_k(shortlist))
        add(llama_cpp.llama_sampler_init_penalties(
            n_vocab, request.penalty_last_n, request.repeat_penalty,
            request.frequency_penalty, request.presence_penalty))
    if request.temperature <= 0:
        add(llama_cpp.llama_sampler_init_greedy())
        return chain
    seed = llama_cpp.LLAMA_DEFAULT_SEED if request.seed is None else request.seed & 0xFFFFFFFF
    add(llama_cpp.llama_sampler_init_top_k(_TOP_K))
    add(llama_cpp.llama_sampler_init_top_p(request.top_p, 1))
    add(llama_cpp.llama_sampler_init_min_p(_MIN_P, 1))
    add(llama_cpp.llama_sampler_init_temp(request.temperature))
    add(llama_cpp.llama_sampler_init_dist(seed))
    return chain


def _penalised(request: GenerationRequest) -> bool:
    return request.penalty_last_n != 0 and (
        request.repeat_penalty != 1.0 or request.frequency_penalty != 0.0
        or request.presence_penalty != 0.0)


def _shortlist(request: GenerationRequest) -> int | None:
    """How many of the best tokens the penalties need to see; None: the whole vocabulary.

    llama.cpp's penalty sampler looks every vocabulary entry up in its table of recent tokens:
    about 0.5 ms a token for SmolLM2's 49,152 entries, 5% of its decode time. Penalties that
    only lower logits move at most one token per distinct recent token (at most the window's
    length) ahead of any other, so the best `window + k` tokens before them hold the best `k`
    after them: the same answer, exactly, from a short list (a grammar, when one filters first,
    only leaves fewer to choose from). Negative penalties raise logits, so those get the whole
    vocabulary."""
    lowers_only = (request.repeat_penalty >= 1.0 and request.frequency_penalty >= 0.0
                   and request.presence_penalty >= 0.0)
    if not lowers_only or not 0 < request.penalty_last_n <= _SHORTLIST_MAX_WINDOW:
        return None
    return request.penalty_last_n + (1 if request.temperature <= 0 else _TOP_K)


class _Detokenizer:
    """Token -> text, one token at a time: bytes from llama.cpp into one reused buffer, then an
    incremental UTF-8 decoder, so a character split over tokens comes out whole."""

    def __init__(self, vocab: llama_cpp.llama_vocab_p) -> None:
        self._vocab = vocab
        self._buffer = ctypes.create_string_buffer(64)
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def piece(self, token: int) -> str:
        size = llama_cpp.llama_token_to_piece(self._vocab, token, self._buffer,
                                              len(self._buffer), 0, False)
        if size < 0:  # longer than the buffer: llama.cpp says how long
            self._buffer = ctypes.create_string_buffer(-size)
            size = llama_cpp.llama_token_to_piece(self._vocab, token, self._buffer,
                                                  len(self._buffer), 0, False)
        return self._utf8.decode(ctypes.string_at(self._buffer, size))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)
