"""Plant knowledge: the plant's own documents, searched and cited (no Textual, HTTP or llama.cpp)."""
