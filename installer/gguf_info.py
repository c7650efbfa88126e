"""Model facts from a GGUF file's header: what the plan needs to size memory.

Nothing is loaded into llama.cpp here, and the header is not handed to a library either: this
module reads it itself, front to back, and checks every count, length and offset against the
bytes the file has before it reads or allocates anything (the checks follow ggml's gguf.cpp,
which llama.cpp loads the same file with). A crafted or damaged file (bad magic, absurd counts,
tensor data past the end) is refused with a ModelError naming the file and the reason; only long
metadata arrays such as the tokenizer's are skipped, not decoded, so reading stays fast and small.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from appliance.errors import ModelError

# Bytes per element of the KV cache types llama.cpp offers (block size / elements per block).
KV_TYPE_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32,
                 "q5_0": 22 / 32, "q4_1": 20 / 32, "q4_0": 18 / 32}
_LAYER = re.compile(r"^blk\.(\d+)\.")
UNUSABLE_HINT = ("copy the model again from the site bundle or vendor; check it with "
                 "`gemba models verify`")

# The GGUF format, as ggml's gguf.cpp reads it.
_MAGIC = b"GGUF"
_VERSIONS = (2, 3)
_MAX_DIMS = 4                         # GGML_MAX_DIMS
_MAX_NAME = 64                        # GGML_MAX_NAME: tensor names are shorter than this
_INT64_MAX = 2**63 - 1
_DEFAULT_ALIGNMENT = 32
_MIN_KV_BYTES = 8 + 4 + 1             # empty key, value type, one-byte value
_MIN_TENSOR_BYTES = 8 + 4 + 4 + 8     # empty name, no dimensions, type, offset
_STRING, _ARRAY, _UINT32 = 8, 9, 4
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}
_SCALAR_STRUCTS = {code: struct.Struct("<" + fmt) for code, fmt in _SCALARS.items()}
_U32, _U64 = _SCALAR_STRUCTS[4], _SCALAR_STRUCTS[10]
_TENSOR_TAILS = [struct.Struct(f"<{n}QIQ") for n in range(_MAX_DIMS + 1)]
"""A tensor record after its name and dimension count: the shape, the type, the data offset."""
_GGML_TYPES = {kind.value: (kind.name, *GGML_QUANT_SIZES[kind]) for kind in GGMLQuantizationType
               if kind in GGML_QUANT_SIZES}
"""ggml type code -> (name, elements per block, bytes per block)."""

# What reading may cost, whatever the file says.
_READ_CHUNK = 1 << 18
_MAX_TEXT = 1 << 16                   # longer metadata strings are kept cut to this many bytes
_MAX_LIST = 1 << 16                   # longer metadata arrays keep only their length
_SKIPPED_ARRAYS = "tokenizer."        # the vocabulary: counted, never decoded
_MAX_KV = 1 << 16                     # real models have a few dozen metadata entries
_MAX_TENSORS = 1 << 18                # and at most some tens of thousands of tensors
_DECODE_BUDGET = 1 << 25              # bytes of Python objects the metadata may take, at most
_LAST_RESORT = (ValueError, TypeError, IndexError, KeyError, OverflowError, MemoryError,
                struct.error)
"""Caught only as a safety net: every check in this module should name the problem first."""
# Bounds on the hyperparameters the plan multiplies together: far above any real model, far
# below what would make a plan allocate or compute nonsense.
_LIMITS = {"block_count": (1, 4096), "attention.head_count": (0, 1 << 16),
           "attention.head_count_kv": (0, 1 << 16), "attention.key_length": (0, 1 << 16),
           "attention.value_length": (0, 1 << 16), "embedding_length": (0, 1 << 20),
           "feed_forward_length": (0, 1 << 24), "context_length": (0, 1 << 30),
           "vocab_size": (0, 1 << 24), "attention.sliding_window": (0, 1 << 30)}


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


class _Unusable(Exception):
    """Why a file is not a usable GGUF model; becomes a ModelError that names the file."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    type_name: str
    """The ggml type, e.g. Q4_1 or F32."""
    n_bytes: int
    offset: int
    """Where the data starts, from the start of the data section."""


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    """Values by key; arrays longer than 65,536 items and the tokenizer's arrays are None."""
    array_lengths: dict[str, int]
    tensors: tuple[TensorInfo, ...]
    data_offset: int
    alignment: int
    file_bytes: int

    @property
    def needed_bytes(self) -> int:
        """How long the file must be to hold every tensor the header lists."""
        return max((self.data_offset + t.offset + t.n_bytes for t in self.tensors),
                   default=self.data_offset)


What = str | Callable[[], str]
"""What is being read, for an error message; a callable when building the text costs."""


class _Cursor:
    """Reads a file front to back, never past its end, a chunk at a time."""

    def __init__(self, stream: IO[bytes], size: int) -> None:
        self.stream, self.size, self.pos = stream, size, 0
        self._buf, self._start = b"", 0
        self.budget = _DECODE_BUDGET

    def spend(self, n_bytes: int) -> None:
        """Account for metadata kept in memory: a file of many small entries must not make a
        few MB of header into gigabytes of Python objects."""
        self.budget -= n_bytes
        if self.budget < 0:
            raise _Unusable(f"its metadata would take over {_DECODE_BUDGET >> 20} MiB of memory "
                            "to read (a model's takes well under 1 MiB)")

    def need(self, n: int, what: What) -> None:
        left = self.size - self.pos
        if n > left:
            what = what() if callable(what) else what
            raise _Unusable(f"{what} at byte {self.pos:,} needs {n:,} bytes, but the file ends "
                            f"{left:,} bytes later (it is truncated or damaged)")

    def _at(self, n: int, what: What) -> int:
        """The buffer index of the next n bytes, reading them if needed.

        The buffer never holds bytes past the file's end, so a hit needs no other check."""
        at = self.pos - self._start
        if at < 0 or at + n > len(self._buf):
            self.need(n, what)
            self.stream.seek(self.pos)
            want = min(max(n, _READ_CHUNK), self.size - self.pos)
            self._buf, self._start, at = self.stream.read(want), self.pos, 0
            if len(self._buf) < n:
                raise _Unusable(f"the file changed while it was read (at byte {self.pos:,})")
        return at

    def unpack(self, fmt: struct.Struct, what: What) -> Any:
        return self.unpack_all(fmt, what)[0]

    def unpack_all(self, fmt: struct.Struct, what: What) -> tuple[Any, ...]:
        at = self._at(fmt.size, what)
        self.pos += fmt.size
        return fmt.unpack_from(self._buf, at)

    def take(self, n: int, what: What) -> bytes:
        at = self._at(n, what)
        self.pos += n
        return self._buf[at:at + n]

    def skip(self, n: int, what: What) -> None:
        self.need(n, what)
        self.pos += n

    def text(self, what: str) -> str:
        n = self.unpack(_U64, f"the length of {what}")
        self.need(n, f"{what} ({n:,} bytes)")
        kept = min(n, _MAX_TEXT)
        self.spend(kept + 64)
        raw = self.take(kept, what)
        self.pos += n - kept
        return raw.decode("utf-8", errors="replace")

    def name(self, index: int) -> str:
        """A tensor name: shorter than GGML_MAX_NAME bytes."""
        n = self.unpack(_U64, lambda: f"the name length of tensor {index}")
        if n >= _MAX_NAME:
            raise _Unusable(f"tensor {index} has a name of {n:,} bytes (at most {_MAX_NAME - 1})")
        return self.take(n, lambda: f"the name of tensor {index}").decode("utf-8", "replace")

    def skip_texts(self, count: int, what: str) -> None:
        """Skip `count` strings without decoding them (the vocabulary: 10^5 of them)."""
        for index in range(count):
            at = self.pos - self._start
            if at < 0 or at + 8 > len(self._buf):
                at = self._at(8, f"the length of {what}[{index}]")
            n = _U64.unpack_from(self._buf, at)[0]
            if n > self.size - self.pos - 8:
                self.pos += 8
                self.need(n, f"{what}[{index}] ({n:,} bytes)")
            self.pos += 8 + n


def read_header(path: Path, check_data: bool = True) -> GGUFHeader:
    """The file's metadata and tensor table, checked; `check_data`: the tensor data too."""
    try:
        with path.open("rb") as stream:
            size = _file_size(stream)
            return _parse(_Cursor(stream, size), check_data)
    except _Unusable as exc:
        reason = str(exc)
    except OSError as exc:
        reason = f"it cannot be read ({exc.strerror or exc})"
    except _LAST_RESORT as exc:
        reason = _unexpected(exc)
    raise ModelError(f"{path} is not a usable GGUF model: {reason}", UNUSABLE_HINT)


def _unexpected(exc: Exception) -> str:
    return f"unexpected content ({type(exc).__name__}: {exc})"


def _file_size(stream: IO[bytes]) -> int:
    size = stream.seek(0, 2)
    stream.seek(0)
    if size == 0:
        raise _Unusable("the file is empty")
    return size


def _parse(cursor: _Cursor, check_data: bool) -> GGUFHeader:
    magic = cursor.take(4, "the GGUF magic") if cursor.size >= 4 else b""
    if magic != _MAGIC:
        raise _Unusable(f"it does not start with the GGUF magic (found {magic!r}, "
                        f"{cursor.size:,} bytes)")
    version = cursor.unpack(_U32, "the version")
    if version not in _VERSIONS:
        endian = " (a big-endian file, which this box cannot load)" \
            if version and version & 0xFFFF == 0 else ""
        raise _Unusable(f"GGUF version {version} is not supported{endian}; expected 2 or 3")
    n_tensors = cursor.unpack(_U64, "the tensor count")
    n_kv = cursor.unpack(_U64, "the metadata count")
    _check_count(cursor, n_tensors, _MIN_TENSOR_BYTES, "tensors", _MAX_TENSORS)
    _check_count(cursor, n_kv, _MIN_KV_BYTES, "metadata entries", _MAX_KV)
    metadata: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for index in range(n_kv):
        key = cursor.text(f"metadata key {index}")
        if key in metadata:
            raise _Unusable(f"metadata key {_shown(key)} appears twice")
        vtype = cursor.unpack(_U32, f"the type of {_shown(key)}")
        if key == "general.alignment" and vtype != _UINT32:
            raise _Unusable(f"general.alignment has value type {vtype}, expected uint32 (4)")
        metadata[key] = _value(cursor, vtype, key, lengths)
    _check_count(cursor, n_tensors, _MIN_TENSOR_BYTES, "tensors", _MAX_TENSORS)
    tensors = _tensor_table(cursor, n_tensors)
    alignment = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
    if alignment == 0 or alignment & (alignment - 1):
        raise _Unusable(f"general.alignment is {alignment}, not a power of two")
    header = GGUFHeader(version, metadata, lengths, tensors, _pad(cursor.pos, alignment),
                        alignment, cursor.size)
    if check_data:
        _check_data(header, cursor.size)
    return header


def _check_count(cursor: _Cursor, count: int, min_bytes: int, what: str, most: int) -> None:
    if count > most:
        raise _Unusable(f"it declares {count:,} {what}; a model has at most {most:,}")
    room = (cursor.size - cursor.pos) // min_bytes
    if count > room:
        raise _Unusable(f"it declares {count:,} {what}, but the {cursor.size - cursor.pos:,} "
                        f"bytes after byte {cursor.pos:,} can hold at most {room:,} (the file "
                        "is truncated or its header damaged)")


def _value(cursor: _Cursor, vtype: int, key: str, lengths: dict[str, int]) -> Any:
    if vtype == _STRING:
        return cursor.text(f"the value of {_shown(key)}")
    scalar = _SCALAR_STRUCTS.get(vtype)
    if scalar is not None:
        return cursor.unpack(scalar, f"the value of {_shown(key)}")
    if vtype == _ARRAY:
        return _array(cursor, key, lengths)
    raise _Unusable(f"metadata key {_shown(key)} has unknown value type {vtype}")


def _array(cursor: _Cursor, key: str, lengths: dict[str, int]) -> list[Any] | None:
    shown = _shown(key)
    item_type = cursor.unpack(_U32, f"the item type of {shown}")
    count = cursor.unpack(_U64, f"the length of {shown}")
    lengths[key] = count
    keep = count <= _MAX_LIST and not key.startswith(_SKIPPED_ARRAYS)
    what = f"the {count:,} items of {shown}"
    if item_type == _STRING:
        cursor.need(count * 8, what)
        if keep:
            return [cursor.text(f"{shown}[{i}]") for i in range(count)]
        cursor.skip_texts(count, shown)
        return None
    fmt = _SCALARS.get(item_type)
    if fmt is None:
        kind = "arrays (nested arrays are not allowed)" if item_type == _ARRAY \
            else f"unknown type {item_type}"
        raise _Unusable(f"metadata array {shown} holds items of {kind}")
    n_bytes = count * struct.calcsize(fmt)
    if not keep:
        cursor.skip(n_bytes, what)
        return None
    cursor.spend(64 + 32 * count)
    return list(struct.unpack(f"<{count}{fmt}", cursor.take(n_bytes, what)))


def _tensor_table(cursor: _Cursor, n_tensors: int) -> tuple[TensorInfo, ...]:
    tensors: list[TensorInfo] = []
    names: set[str] = set()
    for index in range(n_tensors):
        name = cursor.name(index)
        if name in names:
            raise _Unusable(f"tensor {_shown(name)} appears twice")
        names.add(name)

        def about(name: str = name) -> str:
            return f"the record of tensor {_shown(name)}"

        n_dims = cursor.unpack(_U32, about)
        if n_dims > _MAX_DIMS:
            raise _Unusable(f"tensor {_shown(name)} has {n_dims:,} dimensions "
                            f"(at most {_MAX_DIMS})")
        *shape, code, offset = cursor.unpack_all(_TENSOR_TAILS[n_dims], about)
        tensors.append(_tensor(name, shape, code, offset))
    return tuple(tensors)


def _tensor(name: str, shape: list[int], code: int, offset: int) -> TensorInfo:
    elements = 1
    for dim in shape:
        elements *= dim
    if any(dim > _INT64_MAX for dim in shape) or elements >= _INT64_MAX:
        raise _Unusable(f"tensor {_shown(name)} has shape {shape}: too many elements")
    if code not in _GGML_TYPES:
        raise _Unusable(f"tensor {_shown(name)} has unknown type {code}")
    type_name, block, block_bytes = _GGML_TYPES[code]
    if shape and shape[0] % block:
        raise _Unusable(f"tensor {_shown(name)} rows of {shape[0]:,} elements are not a "
                        f"multiple of the {type_name} block size {block}")
    return TensorInfo(name, type_name, elements // block * block_bytes, offset)


def _shown(name: str) -> str:
    """A key or tensor name as it may be printed: quoted, control characters escaped, cut."""
    if len(name) <= 80 and name.isprintable():
        return f"'{name}'"
    clean = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name[:80])
    return f"'{clean}'" + ("…" if len(name) > 80 else "")


def _check_data(header: GGUFHeader, size: int) -> None:
    """Each tensor's data inside the file, in order, where llama.cpp will look for it."""
    expected = 0
    for tensor in header.tensors:
        end = header.data_offset + tensor.offset + tensor.n_bytes
        if end > size:
            raise _Unusable(
                f"the data of tensor {_shown(tensor.name)} lies past the end of the file (it ends at "
                f"byte {end:,}; the tensors need {header.needed_bytes:,} bytes and the file has "
                f"{size:,}): the file is truncated or its tensor table damaged")
        if tensor.offset != expected:
            raise _Unusable(f"tensor {_shown(tensor.name)} has data offset {tensor.offset:,}, "
                            f"expected {expected:,}")
        expected += _pad(tensor.n_bytes, header.alignment)


def needed_file_bytes(path: Path) -> int | None:
    """How long the file's own header says it must be; None if the header is unreadable."""
    try:
        return read_header(path, check_data=False).needed_bytes
    except ModelError:
        return None


def read_model_facts(path: Path) -> ModelFacts:
    """The facts the plan needs, from the file's header; ModelError if it is not usable."""
    header = read_header(path)
    try:
        return _facts(path, header)
    except _Unusable as exc:
        reason = str(exc)
    except _LAST_RESORT as exc:
        reason = _unexpected(exc)
    raise ModelError(f"{path} is not a usable GGUF model: {reason}", UNUSABLE_HINT)


def _facts(path: Path, header: GGUFHeader) -> ModelFacts:
    meta = header.metadata
    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise _Unusable("it names no architecture (general.architecture)")
    if not header.tensors:
        raise _Unusable("it holds no tensors (a vocabulary-only file?)")

    def key(name: str, default: int | None = None) -> int:
        return _count(meta, f"{arch}.{name}", default, *_LIMITS[name])

    heads = key("attention.head_count", 1)
    embedding = key("embedding_length", 0)
    kv_heads = key("attention.head_count_kv", heads)
    head_dim_k = key("attention.key_length", embedding // max(heads, 1))
    head_dim_v = key("attention.value_length", head_dim_k)
    layers = key("block_count")
    window = key("attention.sliding_window", 0)
    swa_layers = _swa_layer_count(arch, layers, meta) if window else 0
    bytes_by_type: Counter[str] = Counter()
    layer_bytes: Counter[int] = Counter()
    embedding_bytes = output_bytes = other_bytes = 0
    for tensor in header.tensors:
        bytes_by_type[tensor.type_name] += tensor.n_bytes
        match = _LAYER.match(tensor.name)
        if match:
            layer_bytes[int(match.group(1))] += tensor.n_bytes
        elif tensor.name == "token_embd.weight":
            embedding_bytes += tensor.n_bytes
        elif tensor.name == "output.weight":
            output_bytes += tensor.n_bytes
        else:
            other_bytes += tensor.n_bytes
    vocab = key("vocab_size", header.array_lengths.get("tokenizer.ggml.tokens", 0))
    weights_by_type = {name: size for name, size in bytes_by_type.items() if name != "F32"}
    name = meta.get("general.name")
    return ModelFacts(
        path=str(path), file_bytes=header.file_bytes, architecture=arch,
        name=name if isinstance(name, str) and name else path.stem,
        quantization=max(weights_by_type, key=weights_by_type.__getitem__, default="F32"),
        layers=layers, heads=heads, kv_heads=kv_heads, head_dim_k=head_dim_k,
        head_dim_v=head_dim_v, context_train=key("context_length", 0),
        embedding=embedding, feed_forward=key("feed_forward_length", 0),
        vocab=vocab, sliding_window=window or None,
        swa_layers=swa_layers, bytes_by_type=dict(bytes_by_type),
        layer_bytes=tuple(layer_bytes[i] for i in range(layers)),
        embedding_bytes=embedding_bytes, output_bytes=output_bytes, other_bytes=other_bytes)


def _count(meta: dict[str, Any], key: str, default: int | None, low: int, high: int) -> int:
    """An integer hyperparameter within bounds; a per-layer array counts by its largest."""
    value = meta.get(key, default)
    if isinstance(value, list) and value:
        value = max(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        shown = "missing" if value is None else f"{value!r:.40}"
        raise _Unusable(f"metadata {_shown(key)} is {shown}, expected an integer from {low:,} to "
                        f"{high:,}")
    return value


def _swa_layer_count(arch: str, layers: int, meta: dict[str, Any]) -> int:
    # Gemma 3: five sliding-window layers, then one global layer (llama.cpp's n_swa_pattern 6).
    if arch == "gemma3":
        return layers - layers // 6
    pattern = meta.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(pattern, list):
        return min(layers, sum(1 for flag in pattern if flag))
    return 0
