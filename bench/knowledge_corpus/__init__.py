"""The plant-knowledge benchmark corpus: documents (make.py), questions (questions.json) and the
check that the two agree (check.py)."""
