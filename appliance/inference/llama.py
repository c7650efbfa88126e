"""The llama.cpp engine: the only module that imports `llama_cpp`.

It runs inside the worker process. The chat template is the model's own (GGUF metadata), rendered
by llama-cpp-python's sandboxed Jinja formatter. `llama_cpp.Llama` only loads the model, context
and vocabulary and tokenizes; the decode loop is ours, on llama.cpp's C API: `llama_decode` on a
batch, then one `llama_sampler` chain (penalties, grammar, top-k, top-p, min-p, temperature,
seeded distribution, or greedy) that picks the token inside llama.cpp, so no logits are copied
into Python. Each token is counted, timed, detokenized incrementally and followed by a cancel
check.
"""

from __future__ import annotations

import codecs
import ctypes
import time
from collections.abc import Callable, Iterator

import llama_cpp
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

# Tokens always left free for the answer when a prompt is checked against the context.
_MIN_ANSWER_TOKENS = 16
_KV_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0,
             "q4_0": llama_cpp.GGML_TYPE_Q4_0}
# The sampling that Llama.generate used (and llama.cpp's defaults) above temperature 0.
_TOP_K = 40
_MIN_P = 0.05
# Windows up to this long get the penalties' shortcut (see _shortlist).
_SHORTLIST_MAX_WINDOW = 512


class LlamaEngine:
    """One loaded model; not thread-safe, so exactly one per worker process."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._llm = llama_cpp.Llama(
            model_path=config.model_path,
            n_ctx=config.n_ctx,
            n_threads=config.n_threads,
            n_threads_batch=config.n_threads,
            n_batch=config.n_batch,
            n_ubatch=config.n_ubatch,
            n_gpu_layers=config.n_gpu_layers,
            type_k=_KV_TYPES[config.kv_cache_type],
            type_v=_KV_TYPES[config.kv_cache_type],
            flash_attn=config.flash_attn,
            use_mmap=config.use_mmap,
            use_mlock=config.use_mlock,
            verbose=False,
        )
        self._formatter = self._chat_formatter()
        self._ctx = self._llm.ctx
        self._vocab = self._llm._model.vocab
        # One token per decode while answering: its array and batch are made once.
        self._next = (llama_cpp.llama_token * 1)()
        self._next_batch = llama_cpp.llama_batch_get_one(self._next, 1)

    def _chat_formatter(self) -> Jinja2ChatFormatter:
        llm = self._llm
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{self.config.model_path} has no chat template in its metadata")

        def token_text(token_id: int) -> str:
            return llm._model.token_get_text(token_id) if token_id != -1 else ""

        return Jinja2ChatFormatter(template=template, eos_token=token_text(llm.token_eos()),
                                   bos_token=token_text(llm.token_bos()),
                                   stop_token_ids=[llm.token_eos()])

    @property
    def n_ctx(self) -> int:
        return self._llm.n_ctx()

    def set_threads(self, n_threads: int) -> None:
        """Change decoding threads on the live context (used by the governor)."""
        llama_cpp.llama_set_n_threads(self._ctx, n_threads, n_threads)

    def tokenize_chat(self, messages: list[dict[str, str]]) -> tuple[list[int], list[str]]:
        formatted = self._formatter(messages=messages)
        tokens = self._llm.tokenize(formatted.prompt.encode("utf-8"),
                                    add_bos=not formatted.added_special, special=True)
        stops = formatted.stop if isinstance(formatted.stop, list) else \
            [formatted.stop] if formatted.stop else []
        return tokens, stops

    def generate(self, request: GenerationRequest,
                 cancelled: Callable[[], bool]) -> Iterator[Event]:
        started = time.perf_counter()
        prompt_tokens, template_stops = self.tokenize_chat(list(request.messages))
        room = self.n_ctx - len(prompt_tokens)
        if room < _MIN_ANSWER_TOKENS:
            yield Refused(
                "prompt_too_long",
                f"the prompt is {len(prompt_tokens)} tokens but the context window is "
                f"{self.n_ctx} tokens (at least {_MIN_ANSWER_TOKENS} must stay free for the answer)",
                "shorten the question or start a new conversation; an engineer can raise "
                "model.n_ctx if memory allows",
            )
            return
        max_tokens = min(request.max_tokens, room)
        yield Prompt(len(prompt_tokens), max_tokens)
        stops = _StopScanner([s for s in (*request.stop, *template_stops) if s])
        text = _Detokenizer(self._vocab)
        completion_tokens, first_at, finish = 0, None, "length"
        sampler = sampler_chain(request, self._vocab, self._llm.n_vocab())
        try:
            self._read_prompt(prompt_tokens)
            while True:
                token = llama_cpp.llama_sampler_sample(sampler, self._ctx, -1)
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                completion_tokens += 1
                if first_at is None:
                    first_at = time.perf_counter()
                piece, hit = stops.feed(text.piece(token))
                if piece:
                    yield Piece(piece)
                if hit:
                    finish = "stop"
                    break
                if completion_tokens >= max_tokens:
                    break
                if cancelled():
                    finish = "cancelled"
                    break
                self._next[0] = token
                self._decode(self._next_batch)
        finally:
            llama_cpp.llama_sampler_free(sampler)
        tail = stops.flush(text.flush())
        if tail:
            yield Piece(tail)
        ended = time.perf_counter()
        yield Finished(finish, len(prompt_tokens), completion_tokens,
                       None if first_at is None else first_at - started,
                       0.0 if first_at is None else ended - first_at)

    def _read_prompt(self, tokens: list[int]) -> None:
        # Every prompt is read whole, from an empty cache, in n_batch chunks: reusing the
        # previous prompt's cached prefix reads the rest in another batch shape, whose rounding
        # differs, and the same question at temperature 0 then got one answer right after
        # start-up and another one later.
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)
        n_batch = self._llm.n_batch
        for start in range(0, len(tokens), n_batch):
            chunk = tokens[start:start + n_batch]
            array = (llama_cpp.llama_token * len(chunk))(*chunk)
            self._decode(llama_cpp.llama_batch_get_one(array, len(chunk)))

    def _decode(self, batch: llama_cpp.llama_batch) -> None:
        status = llama_cpp.llama_decode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")


def sampler_chain(request: GenerationRequest, vocab: llama_cpp.llama_vocab_p,
                  n_vocab: int) -> llama_cpp.llama_sampler_p:
    """The request's sampling as one llama.cpp chain; the caller frees it (llama_sampler_free).

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
    if request.json:
        add(llama_cpp.llama_sampler_init_grammar(vocab, JSON_GBNF.encode("utf-8"), b"root"))
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
    after them: the same answer, exactly, from a short list. Negative penalties raise logits,
    and a grammar may reject every short-listed token, so those get the whole vocabulary."""
    lowers_only = (request.repeat_penalty >= 1.0 and request.frequency_penalty >= 0.0
                   and request.presence_penalty >= 0.0)
    if request.json or not lowers_only or not 0 < request.penalty_last_n <= _SHORTLIST_MAX_WINDOW:
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


class _StopScanner:
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
