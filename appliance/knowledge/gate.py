"""The evidence gate: decided in code, before any model runs, whether the documents support an
answer. Pure: hits in, a verdict out.

A passage supports a question when it contains every number and code the question names (a
question about line 7 is not answered from line 3's SOP) and covers enough of the question's
content terms, weighted by rarity. Dense similarity never decides a refusal: off-topic and
in-domain questions score alike (KNOWLEDGE.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.knowledge.search import Hit

MIN_COVERAGE = 0.3
"""Share of the question's (IDF-weighted) terms a passage must contain to support an answer."""
MAX_CITED = 3
NEAREST = 3


@dataclass(frozen=True)
class Evidence:
    basis: str
    """`documents` (cited passages support an answer) or `none` (refuse, no model call)."""
    cited: list[Hit] = field(default_factory=list)
    """Supporting passages, best first."""
    nearest: list[Hit] = field(default_factory=list)
    """When refusing: the closest passages, one per document, for the operator to look at."""


def supports(hit: Hit) -> bool:
    """Every number and code of the question is in the passage, and either the codes alone
    decide (an operator asking about E-104 wants E-104's row) or enough of the rest is there."""
    return not hit.missing_specific and (hit.has_codes or hit.coverage >= MIN_COVERAGE)


def judge(question: str, hits: list[Hit]) -> Evidence:
    cited = [hit for hit in hits if supports(hit)][:MAX_CITED]
    if cited:
        return Evidence("documents", cited)
    nearest: list[Hit] = []
    for hit in hits:
        if hit.matched and all(hit.document != other.document for other in nearest):
            nearest.append(hit)
    return Evidence("none", [], nearest[:NEAREST])
