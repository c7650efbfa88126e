"""The engine's own decode loop on llama.cpp's C API, against llama-cpp-python's `Llama.generate`.

Greedy answers must be token for token what `Llama.generate` gives on the same model (with and
without penalties); seeds repeat; penalties change an answer; JSON mode gives JSON. Answers
decoded together in slots are each the answer given alone; a follow-up reads only its new
tokens; a system prompt is read once and copied to the slots that need it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest
from llama_cpp.llama_grammar import JSON_GBNF

from appliance.config import GenerationSettings
from appliance.inference.llama import LlamaEngine
from appliance.inference.protocol import (
    EngineConfig,
    Event,
    Finished,
    GenerationRequest,
    Prompt,
    Refused,
    collect,
    generate,
)
from appliance.models import resolve_verified
from tests.conftest import LONG_ANSWER_PROMPT

pytestmark = pytest.mark.model

QUESTIONS = [
    "What does alarm B-100 on the filler mean?",
    "Why is the hydraulic pump noisy after a filter change?",
    LONG_ANSWER_PROMPT,
    "注塑机报警E-21是什么意思？",
    "ポンプの圧力が低い原因は何ですか？",
]


def _model_path() -> str:
    return str(resolve_verified("smollm2-135m-instruct-q4_1", Path("/nonexistent"))[1])


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaEngine]:
    engine = LlamaEngine(EngineConfig("smollm2", _model_path(), "", n_ctx=2048, n_threads=2,
                                      n_batch=512, n_gpu_layers=0, n_parallel=4))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def llm() -> llama_cpp.Llama:
    """llama-cpp-python's own high-level loop, for reference, with the engine's attention."""
    return llama_cpp.Llama(_model_path(), n_ctx=2048, n_threads=2, n_batch=512,
                           flash_attn=EngineConfig.flash_attn, verbose=False)


def _request(question: str, max_tokens: int = 48, temperature: float = 0.0,
             **options: object) -> GenerationRequest:
    return GenerationRequest(({"role": "user", "content": question},), max_tokens,
                             temperature, **options)  # type: ignore[arg-type]


def _ask(engine: LlamaEngine, question: str, max_tokens: int = 48, temperature: float = 0.0,
         **options: object) -> tuple[str, Finished]:
    request = _request(question, max_tokens, temperature, **options)
    text, finished = collect(generate(engine, request, lambda: False))
    assert isinstance(finished, Finished)
    return text, finished


def _reference(engine: LlamaEngine, llm: llama_cpp.Llama, question: str, max_tokens: int = 48,
               temperature: float = 0.0, seed: int | None = None,
               grammar: llama_cpp.LlamaGrammar | None = None,
               **penalties: float) -> tuple[str, int]:
    """What the engine answered before it had its own loop: `Llama.generate`."""
    prompt, _ = engine.tokenize_chat([{"role": "user", "content": question}])
    llm.reset()
    if seed is not None:
        llm.set_seed(seed)
    tokens: list[int] = []
    generator = llm.generate(prompt, temp=temperature, top_p=0.95, reset=True, grammar=grammar,
                             **penalties)
    for token in generator:
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            break
        tokens.append(token)
        if len(tokens) >= max_tokens:
            break
    generator.close()
    return llm.detokenize(tokens).decode("utf-8", errors="replace"), len(tokens)


@pytest.mark.parametrize("question", QUESTIONS)
def test_greedy_answer_is_what_llama_generate_gives(engine: LlamaEngine, llm: llama_cpp.Llama,
                                                    question: str) -> None:
    text, finished = _ask(engine, question)
    expected, tokens = _reference(engine, llm, question)
    assert text == expected
    assert finished.completion_tokens == tokens


@pytest.mark.parametrize("question", [QUESTIONS[0], LONG_ANSWER_PROMPT])
def test_penalised_greedy_answer_is_what_llama_generate_gives(engine: LlamaEngine,
                                                             llm: llama_cpp.Llama,
                                                             question: str) -> None:
    text, _ = _ask(engine, question, repeat_penalty=1.15, frequency_penalty=0.3,
                   presence_penalty=0.2)
    expected, _ = _reference(engine, llm, question, repeat_penalty=1.15, frequency_penalty=0.3,
                             presence_penalty=0.2)
    assert text == expected


@pytest.mark.parametrize("question", [QUESTIONS[1], QUESTIONS[4]])
def test_seeded_penalised_answer_is_what_llama_generate_gives(engine: LlamaEngine,
                                                             llm: llama_cpp.Llama,
                                                             question: str) -> None:
    """Sampling with penalties takes a short list first (llama.py `_shortlist`): it must not
    change which token the seeded draw picks."""
    penalties = {"repeat_penalty": 1.1, "frequency_penalty": 0.5, "presence_penalty": 0.3}
    text, _ = _ask(engine, question, temperature=0.9, seed=11, **penalties)
    expected, _ = _reference(engine, llm, question, temperature=0.9, seed=11, **penalties)
    assert text == expected


def test_the_same_question_gets_the_same_answer_later(engine: LlamaEngine) -> None:
    first, _ = _ask(engine, QUESTIONS[1])
    _ask(engine, "A different, longer question about the conveyor belt and its motor?")
    again, _ = _ask(engine, QUESTIONS[1])
    assert again == first


def test_a_seed_repeats_its_answer_above_temperature_zero(engine: LlamaEngine) -> None:
    one, _ = _ask(engine, QUESTIONS[1], temperature=1.0, seed=42)
    two, _ = _ask(engine, QUESTIONS[1], temperature=1.0, seed=42)
    other, _ = _ask(engine, QUESTIONS[1], temperature=1.0, seed=7)
    assert one == two
    assert other != one


@pytest.mark.parametrize("penalty", [{"repeat_penalty": 1.3}, {"frequency_penalty": 1.0},
                                     {"presence_penalty": 1.0}], ids=str)
def test_each_penalty_changes_an_answer(engine: LlamaEngine, penalty: dict[str, float]) -> None:
    question = QUESTIONS[0]
    plain, _ = _ask(engine, question, max_tokens=64)
    penalised, _ = _ask(engine, question, max_tokens=64, **penalty)
    assert penalised != plain


def test_penalties_off_when_their_window_is_zero(engine: LlamaEngine) -> None:
    plain, _ = _ask(engine, LONG_ANSWER_PROMPT, max_tokens=64)
    windowless, _ = _ask(engine, LONG_ANSWER_PROMPT, max_tokens=64, repeat_penalty=1.3,
                         penalty_last_n=0)
    assert windowless == plain


def test_json_mode_answers_json_only(engine: LlamaEngine) -> None:
    # With the repetition penalty the daemon applies by default: the bare model at temperature 0
    # may loop inside the JSON until the token limit.
    text, finished = _ask(engine, "Give the status of pump P-7 (running, 4.2 bar) as JSON.",
                          max_tokens=256, json=True,
                          repeat_penalty=GenerationSettings().repeat_penalty)
    assert finished.finish_reason == "stop"
    assert isinstance(json.loads(text), dict)


@pytest.mark.parametrize(("question", "penalties"), [
    ("Give the status of pump P-7 (running, 4.2 bar) as JSON.", {}),
    ("List the alarms of the filler as a JSON array.", {"repeat_penalty": 1.1}),
    (QUESTIONS[0], {"repeat_penalty": 1.1, "presence_penalty": 0.3}),
], ids=["status", "list-penalised", "plain-question"])
def test_json_mode_checks_one_token_and_answers_as_the_whole_vocabulary_check_does(
        engine: LlamaEngine, llm: llama_cpp.Llama, question: str,
        penalties: dict[str, float]) -> None:
    """The engine asks the grammar about the token the model picked, and filters the whole
    vocabulary only when that token is refused: the answer is the one llama-cpp-python gives
    with the grammar in its sampler chain, filtering every token every time."""
    grammar = llama_cpp.LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    text, _ = _ask(engine, question, max_tokens=64, json=True, **penalties)
    expected, _ = _reference(engine, llm, question, max_tokens=64, grammar=grammar, **penalties)
    assert text == expected


def test_json_mode_with_a_seed_repeats_and_parses(engine: LlamaEngine) -> None:
    question = "Give the status of pump P-7 (running, 4.2 bar) as JSON."
    one, finished = _ask(engine, question, max_tokens=200, temperature=0.8, seed=5, json=True)
    two, _ = _ask(engine, question, max_tokens=200, temperature=0.8, seed=5, json=True)
    assert one == two
    if finished.finish_reason == "stop":
        json.loads(one)


def test_cancel_is_checked_between_tokens(engine: LlamaEngine) -> None:
    checks = []
    request = GenerationRequest(({"role": "user", "content": LONG_ANSWER_PROMPT},), 100, 0.0)
    events = list(generate(engine, request, lambda: checks.append(1) or len(checks) >= 3))
    assert isinstance(events[0], Prompt)
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert (finished.finish_reason, finished.completion_tokens) == ("cancelled", 3)


def test_a_prompt_that_does_not_fit_is_refused_and_the_engine_goes_on(
        engine: LlamaEngine) -> None:
    request = GenerationRequest(({"role": "user", "content": "pump " * 3000},), 10, 0.0)
    events = list(generate(engine, request, lambda: False))
    assert len(events) == 1 and isinstance(events[0], Refused)
    assert events[0].kind == "prompt_too_long"
    text, finished = _ask(engine, QUESTIONS[0], max_tokens=8)
    assert text and finished.completion_tokens == 8


def test_a_character_split_over_tokens_comes_out_whole(engine: LlamaEngine) -> None:
    text, _ = _ask(engine, QUESTIONS[3], max_tokens=32)
    assert "\ufffd" not in text


def _together(engine: LlamaEngine, requests: dict[int, GenerationRequest],
              admit_at: dict[int, int] | None = None,
              cancel_at: dict[int, int] | None = None) -> dict[int, tuple[str, Event]]:
    """Run jobs in the engine's slots at once: job j is admitted at step admit_at[j] (default
    0) and cancelled at step cancel_at[j]; each job's text and last event."""
    admit_at, cancel_at = admit_at or {}, cancel_at or {}
    events: dict[int, list[Event]] = {job: [] for job in requests}
    done: set[int] = set()
    step = 0
    while len(done) < len(requests):
        for job, request in requests.items():
            if admit_at.get(job, 0) == step:
                first = engine.admit(job, request)
                events[job].append(first)
                if isinstance(first, Refused):
                    done.add(job)
            if cancel_at.get(job) == step and job not in done:
                events[job].extend(engine.cancel(job))
                done.add(job)
        for job, event in engine.step():
            events[job].append(event)
            if isinstance(event, (Finished, Refused)):
                done.add(job)
        step += 1
    assert engine.active == 0
    return {job: collect(job_events) for job, job_events in events.items()}


def test_answers_decoded_together_are_each_the_answer_given_alone(engine: LlamaEngine) -> None:
    questions = [QUESTIONS[0], QUESTIONS[1], QUESTIONS[3], QUESTIONS[4]]
    alone = [_ask(engine, question, max_tokens=40)[0] for question in questions]
    together = _together(engine, {n: _request(q, 40) for n, q in enumerate(questions)})
    assert [together[n][0] for n in range(4)] == alone
    # A job that comes while the others answer reads its prompt in their batch.
    staggered = _together(engine, {n: _request(q, 40) for n, q in enumerate(questions)},
                          admit_at={1: 5, 2: 9, 3: 17})
    assert [staggered[n][0] for n in range(4)] == alone


def test_one_slot_cancelled_leaves_the_others_answering(engine: LlamaEngine) -> None:
    questions = [QUESTIONS[0], LONG_ANSWER_PROMPT, QUESTIONS[4]]
    alone = [_ask(engine, question, max_tokens=40)[0] for question in questions]
    result = _together(engine, {n: _request(q, 40) for n, q in enumerate(questions)},
                       cancel_at={1: 6})
    text, last = result[1]
    assert isinstance(last, Finished) and last.finish_reason == "cancelled"
    assert 0 < last.completion_tokens < 40 and alone[1].startswith(text)
    assert (result[0][0], result[2][0]) == (alone[0], alone[2])


def test_a_follow_up_reads_only_its_new_tokens(engine: LlamaEngine) -> None:
    turns = [{"role": "user", "content": QUESTIONS[0]}]
    first, finished = _ask(engine, QUESTIONS[0])
    assert finished.cached_tokens == 0
    turns += [{"role": "assistant", "content": first},
              {"role": "user", "content": "And how do I reset it?"}]
    request = GenerationRequest(tuple(turns), 32, 0.0)
    text, follow_up = collect(generate(engine, request, lambda: False))
    assert isinstance(follow_up, Finished) and text
    # The whole first turn (prompt and answer) was in the slot's cache.
    first_prompt, _ = engine.tokenize_chat(turns[:1])
    assert follow_up.cached_tokens >= len(first_prompt) + finished.completion_tokens - 1
    assert follow_up.cached_tokens < follow_up.prompt_tokens
    # A new conversation is read whole.
    _, fresh = _ask(engine, QUESTIONS[1])
    assert fresh.cached_tokens == 0


SYSTEM = GenerationSettings().system_prompt


def _with_system(question: str, max_tokens: int = 40, system: str = SYSTEM) -> GenerationRequest:
    return GenerationRequest(({"role": "system", "content": system},
                              {"role": "user", "content": question}), max_tokens, 0.0)


def test_a_system_prompt_is_its_own_first_chunk(engine: LlamaEngine) -> None:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi?"}]
    prompt, _ = engine.tokenize_chat(messages)
    size = engine.system_prefix(messages, prompt)
    alone, _ = engine.tokenize_chat(messages[:1])  # with the assistant header after it
    assert 16 <= size < len(alone) < len(prompt)
    assert engine.system_prefix(messages[1:], prompt) == 0  # no system message
    assert engine.system_prefix(messages[:1], alone) == 0  # nothing after it
    short = [{"role": "system", "content": "Be brief."}, messages[1]]
    assert engine.system_prefix(short, engine.tokenize_chat(short)[0]) == 0


def test_a_system_prompt_is_read_once_and_answers_stay_the_same(
        engine: LlamaEngine, llm: llama_cpp.Llama) -> None:
    """Every slot but the first borrows the system prompt's cache; answers are the ones read
    from scratch, and what llama-cpp-python gives reading the system part, then the rest."""
    questions = [QUESTIONS[0], QUESTIONS[1], QUESTIONS[3], QUESTIONS[4]]
    alone = []
    for question in questions:
        engine.abort_all()  # nothing cached: the prompt is read from its first token
        text, finished = collect(generate(engine, _with_system(question), lambda: False))
        assert isinstance(finished, Finished) and finished.cached_tokens == 0
        alone.append(text)
    messages = list(_with_system(questions[0]).messages)
    prompt, _ = engine.tokenize_chat(messages)
    size = engine.system_prefix(messages, prompt)
    llm.reset()
    llm.eval(prompt[:size])
    tokens = []
    for token in llm.generate(prompt, temp=0.0, reset=True):  # reuses the evaluated prefix
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) or len(tokens) == 40:
            break
        tokens.append(token)
    assert llm.detokenize(tokens).decode("utf-8", errors="replace") == alone[0]

    engine.abort_all()
    together = _together(engine, {n: _with_system(q) for n, q in enumerate(questions)})
    assert [together[n][0] for n in range(4)] == alone
    cached = sorted(last.cached_tokens for _, last in together.values()
                    if isinstance(last, Finished))
    assert cached == [0, size, size, size]
    staggered = _together(engine, {n: _with_system(q) for n, q in enumerate(questions)},
                          admit_at={1: 5, 2: 9, 3: 17})
    assert [staggered[n][0] for n in range(4)] == alone
    assert all(isinstance(last, Finished) and last.cached_tokens == size
               for _, last in staggered.values())


def test_another_system_prompt_is_read_whole(engine: LlamaEngine) -> None:
    collect(generate(engine, _with_system(QUESTIONS[0]), lambda: False))
    other = _with_system(QUESTIONS[0], system=SYSTEM.replace("Gemba", "Kaizen"))
    _, finished = collect(generate(engine, other, lambda: False))
    assert isinstance(finished, Finished) and finished.cached_tokens == 0


def test_a_system_prompt_is_read_again_where_a_copy_would_take_longer(
        engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a box where copying a slot's cache costs more than reading the system prompt (a very
    long context), each slot reads it itself, and the answers are the same."""
    questions = [QUESTIONS[0], QUESTIONS[1]]
    engine.abort_all()
    copied = _together(engine, {n: _with_system(q) for n, q in enumerate(questions)})
    monkeypatch.setattr(engine, "_copy_s", math.inf)
    engine.abort_all()
    read = _together(engine, {n: _with_system(q) for n, q in enumerate(questions)})
    assert [read[n][0] for n in range(2)] == [copied[n][0] for n in range(2)]
    assert [last.cached_tokens for _, last in read.values()
            if isinstance(last, Finished)] == [0, 0]
    assert [last.cached_tokens > 0 for _, last in copied.values()
            if isinstance(last, Finished)] == [False, True]  # the second was copied


def test_a_system_prompt_held_at_start_serves_the_first_question(engine: LlamaEngine) -> None:
    engine.abort_all()
    cold, read = collect(generate(engine, _with_system(QUESTIONS[1]), lambda: False))
    engine.abort_all()
    engine.hold(SYSTEM)
    engine.hold(SYSTEM)  # already held: no second slot
    assert sum(bool(slot.held) for slot in engine._slots) == 1
    text, held = collect(generate(engine, _with_system(QUESTIONS[1]), lambda: False))
    assert isinstance(read, Finished) and isinstance(held, Finished)
    assert (read.cached_tokens, text) == (0, cold)
    assert 16 <= held.cached_tokens < held.prompt_tokens


def test_holding_a_system_prompt_never_empties_a_slot(engine: LlamaEngine) -> None:
    engine.abort_all()
    for n, question in enumerate(QUESTIONS[:4]):  # every slot holds a conversation
        engine.admit(n, _request(question, 2))
    while engine.active:
        engine.step()
    held = [list(slot.held) for slot in engine._slots]
    engine.hold(SYSTEM)
    assert [list(slot.held) for slot in engine._slots] == held
