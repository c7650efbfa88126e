"""The llama.cpp engine: the only module that imports `llama_cpp`.

It runs inside the worker process. The chat template is the model's own (GGUF metadata), rendered
by llama-cpp-python's sandboxed Jinja formatter. Tokens come from `Llama.generate`, so each one is
counted, timed, and followed by a cancel check.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

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

    def _json_grammar(self) -> LlamaGrammar:
        # Parsed per answer: llama.cpp's grammar sampler keeps the state of the text so far.
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)

    @property
    def n_ctx(self) -> int:
        return self._llm.n_ctx()

    def set_threads(self, n_threads: int) -> None:
        """Change decoding threads on the live context (used by the governor)."""
        llama_cpp.llama_set_n_threads(self._llm.ctx, n_threads, n_threads)

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
        if request.seed is not None:
            self._llm.set_seed(request.seed)
        stops = _StopScanner([s for s in (*request.stop, *template_stops) if s])
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab = self._llm._model.vocab
        completion_tokens, first_at, finish = 0, None, "length"
        # Every prompt is read whole: reusing the previous prompt's cached prefix reads the rest
        # in another batch shape, whose rounding differs, and the same question at temperature
        # 0 then got one answer right after start-up and another one later.
        self._llm.reset()
        tokens = self._llm.generate(prompt_tokens, temp=request.temperature, top_p=request.top_p,
                                    presence_penalty=request.presence_penalty,
                                    frequency_penalty=request.frequency_penalty,
                                    repeat_penalty=request.repeat_penalty,
                                    grammar=self._json_grammar() if request.json else None,
                                    reset=True)
        try:
            for token in tokens:
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                completion_tokens += 1
                if first_at is None:
                    first_at = time.perf_counter()
                text, hit = stops.feed(decoder.decode(self._llm.detokenize([token])))
                if text:
                    yield Piece(text)
                if hit:
                    finish = "stop"
                    break
                if completion_tokens >= max_tokens:
                    break
                if cancelled():
                    finish = "cancelled"
                    break
        finally:
            tokens.close()
        tail = stops.flush(decoder.decode(b"", final=True))
        if tail:
            yield Piece(tail)
        ended = time.perf_counter()
        yield Finished(finish, len(prompt_tokens), completion_tokens,
                       None if first_at is None else first_at - started,
                       0.0 if first_at is None else ended - first_at)


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
