"""Several operators at once, against the real daemon and model: answers decoded together in the
engine's slots are each the answer the question gets alone, a conversation's follow-up is not
read again from its start, and a new conversation reuses only the system prompt."""

from __future__ import annotations

import threading
from typing import Any

import openai
import pytest

from tests.conftest import GembaHome

pytestmark = pytest.mark.model

QUESTIONS = [
    "What does alarm B-100 on the filler mean?",
    "Why is the hydraulic pump noisy after a filter change?",
    "注塑机报警E-21是什么意思？",
    "ポンプの圧力が低い原因は何ですか？",
]


def _ask(daemon: GembaHome, messages: list[dict[str, str]], max_tokens: int = 32) -> Any:
    client = openai.OpenAI(base_url=f"{daemon.url}/v1", api_key="unused", max_retries=0,
                           timeout=180)
    return client.chat.completions.create(model="gemba", messages=messages, temperature=0,
                                          max_tokens=max_tokens,
                                          extra_body={"knowledge": "off"})


def test_four_operators_at_once_each_get_the_answer_they_get_alone(daemon: GembaHome) -> None:
    alone = [_ask(daemon, [{"role": "user", "content": q}]).choices[0].message.content
             for q in QUESTIONS]
    together: dict[int, str] = {}
    start = threading.Barrier(len(QUESTIONS))

    def ask(n: int) -> None:
        start.wait()
        reply = _ask(daemon, [{"role": "user", "content": QUESTIONS[n]}])
        together[n] = reply.choices[0].message.content

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(QUESTIONS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert [together.get(n) for n in range(len(QUESTIONS))] == alone
    titles = [row["title"] for row in daemon.history()]
    assert all(titles.count(q) >= 2 for q in QUESTIONS)  # each stored, alone and together


def test_a_follow_up_reuses_its_conversation_and_a_new_one_only_the_system_prompt(
        daemon: GembaHome) -> None:
    first = [{"role": "user", "content": "Conveyor 3 stopped with alarm E-104. What now?"}]
    one = _ask(daemon, first)
    follow_up = [*first, {"role": "assistant", "content": one.choices[0].message.content},
                 {"role": "user", "content": "And after the reset?"}]
    two = _ask(daemon, follow_up)
    cached = two.usage.prompt_tokens_details.cached_tokens
    # Turn one's prompt and answer were not read again: only the new turn was.
    assert one.usage.prompt_tokens <= cached < two.usage.prompt_tokens
    assert two.choices[0].message.content.strip()
    # The same first question again is a new conversation: only the system prompt (which the
    # daemon puts first) is not read again, the same share as for any other new question.
    again = _ask(daemon, first)
    other = _ask(daemon, [{"role": "user", "content": "What does PPE stand for?"}])
    system = other.usage.prompt_tokens_details.cached_tokens
    assert 0 < system < other.usage.prompt_tokens
    assert again.usage.prompt_tokens_details.cached_tokens == system
    assert one.usage.prompt_tokens_details.cached_tokens in (0, system)
    assert again.choices[0].message.content == one.choices[0].message.content


def test_the_first_question_after_a_start_finds_the_system_prompt_read(
        gemba_home: GembaHome) -> None:
    """The daemon's engine reads its system prompts before it says it is ready."""
    gemba_home.start_daemon()
    first = _ask(gemba_home, [{"role": "user", "content": "What does PPE stand for?"}])
    assert 16 <= first.usage.prompt_tokens_details.cached_tokens < first.usage.prompt_tokens
