"""Model facts from GGUF metadata (the `gguf` package's reader): what the plan needs to size memory.

Nothing is loaded into llama.cpp here: a crafted or damaged file fails in the reader with a
clear error, before any native code sees it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import ModelError

# Bytes per element of the KV cache types llama.cpp offers (block size / elements per block).
KV_TYPE_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32,
                 "q5_0": 22 / 32, "q4_1": 20 / 32, "q4_0": 18 / 32}
_LAYER = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class ModelFacts:
    path: str
    file_bytes: int
    architecture: str
    name: str
    quantization: str
    """The dominant tensor type of the weights (by bytes), e.g. Q4_1 or Q4_K."""
    layers: int
    heads: int
    kv_heads: int
    head_dim_k: int
    head_dim_v: int
    context_train: int
    embedding: int
    feed_forward: int
    vocab: int
    sliding_window: int | None
    """Width of sliding-window attention layers (Gemma 3), None when every layer is global."""
    swa_layers: int
    """How many layers use the sliding window; their KV cache does not grow with the context."""
    bytes_by_type: dict[str, int] = field(default_factory=dict)
    layer_bytes: tuple[int, ...] = ()
    embedding_bytes: int = 0
    output_bytes: int = 0
    """Separate output (lm_head) weights; 0 when tied to the embedding."""
    other_bytes: int = 0

    @property
    def weight_bytes(self) -> int:
        return sum(self.layer_bytes) + self.embedding_bytes + self.output_bytes + self.other_bytes

    def kv_bytes(self, n_ctx: int, cache_type: str = "f16", n_ubatch: int = 512,
                 swa_full: bool = True) -> int:
        """KV cache llama.cpp allocates for `n_ctx` tokens (one sequence).

        `swa_full`: llama-cpp-python's default gives sliding-window layers a full-size cache
        too (measured on Gemma 3); only without it do they stop growing with the context."""
        per_token_layer = (self.head_dim_k + self.head_dim_v) * self.kv_heads
        element = KV_TYPE_BYTES[cache_type]
        swa_layers = 0 if swa_full else self.swa_layers
        total = (self.layers - swa_layers) * n_ctx * per_token_layer * element
        if swa_layers and self.sliding_window:
            swa_ctx = min(n_ctx, _pad(self.sliding_window + n_ubatch, 256))
            total += swa_layers * swa_ctx * per_token_layer * element
        return int(total)


def _pad(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def read_model_facts(path: Path) -> ModelFacts:
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure: not a usable GGUF
        raise ModelError(f"{path} is not a readable GGUF model: {exc}",
                         "copy the model file again; check it with `gemba models verify`") from exc
    meta = {name: _value(field_) for name, field_ in reader.fields.items()
            if not name.startswith("tokenizer.ggml.")}
    arch = str(meta.get("general.architecture", "unknown"))

    def key(name: str, default: Any = None) -> Any:
        return meta.get(f"{arch}.{name}", default)

    heads = int(key("attention.head_count", 1))
    embedding = int(key("embedding_length", 0))
    kv_heads = int(key("attention.head_count_kv", heads))
    head_dim_k = int(key("attention.key_length", embedding // max(heads, 1)))
    head_dim_v = int(key("attention.value_length", head_dim_k))
    layers = int(key("block_count", 0))
    window = key("attention.sliding_window")
    swa_layers = _swa_layer_count(arch, layers, meta) if window else 0
    bytes_by_type: Counter[str] = Counter()
    layer_bytes: Counter[int] = Counter()
    embedding_bytes = output_bytes = other_bytes = 0
    for tensor in reader.tensors:
        size = int(tensor.n_bytes)
        bytes_by_type[tensor.tensor_type.name] += size
        match = _LAYER.match(tensor.name)
        if match:
            layer_bytes[int(match.group(1))] += size
        elif tensor.name == "token_embd.weight":
            embedding_bytes += size
        elif tensor.name == "output.weight":
            output_bytes += size
        else:
            other_bytes += size
    vocab = key("vocab_size")
    if vocab is None and "tokenizer.ggml.tokens" in reader.fields:
        vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    weights_by_type = {name: size for name, size in bytes_by_type.items()
                       if name not in ("F32",)}
    return ModelFacts(
        path=str(path), file_bytes=path.stat().st_size, architecture=arch,
        name=str(meta.get("general.name", path.stem)),
        quantization=max(weights_by_type, key=weights_by_type.__getitem__, default="F32"),
        layers=layers, heads=heads, kv_heads=kv_heads, head_dim_k=head_dim_k,
        head_dim_v=head_dim_v, context_train=int(key("context_length", 0)),
        embedding=embedding, feed_forward=int(key("feed_forward_length", 0)),
        vocab=int(vocab or 0), sliding_window=int(window) if window else None,
        swa_layers=swa_layers, bytes_by_type=dict(bytes_by_type),
        layer_bytes=tuple(layer_bytes[i] for i in range(layers)),
        embedding_bytes=embedding_bytes, output_bytes=output_bytes, other_bytes=other_bytes)


def _swa_layer_count(arch: str, layers: int, meta: dict[str, Any]) -> int:
    # Gemma 3: five sliding-window layers, then one global layer (llama.cpp's n_swa_pattern 6).
    if arch == "gemma3":
        return layers - layers // 6
    pattern = meta.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(pattern, list):
        return sum(1 for flag in pattern if flag)
    return 0


def _value(field_: Any) -> Any:
    try:
        return field_.contents()
    except Exception:  # noqa: BLE001 - an odd field must not stop the probe
        return None
