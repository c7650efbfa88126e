"""The plan, table-driven over every recorded box: what an expert would decide, and why.

Pure: recorded hardware + a shipped profile + model facts in, settings and checks out. The
embedded model's facts come from its real GGUF file; a larger model is described by its facts.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from appliance.models import CATALOG, locate
from installer.derive import choose_profile
from installer.gguf_info import ModelFacts, read_model_facts
from installer.plan import GIB, Plan, make_plan
from installer.profiles import best_match, load_profiles
from tests.fakes.hardware import load_recorded, recorded_names

PROFILES = load_profiles()


@pytest.fixture(scope="module")
def smollm() -> ModelFacts:
    path = locate(CATALOG["smollm2-135m-instruct-q4_1"], Path("/nonexistent"))
    assert path is not None
    return read_model_facts(path)


def llama_8b_q4_k() -> ModelFacts:
    """An 8B-class model at Q4_K (figures of a Llama-3-8B Q4_K_M GGUF)."""
    layer = 136_000_000
    return ModelFacts(
        path="llama-3-8b-q4_k_m.gguf", file_bytes=4_920_000_000, architecture="llama",
        name="Llama 3 8B Instruct", quantization="Q4_K", layers=32, heads=32, kv_heads=8,
        head_dim_k=128, head_dim_v=128, context_train=8192, embedding=4096,
        feed_forward=14336, vocab=128256, sliding_window=None, swa_layers=0,
        bytes_by_type={"Q4_K": 4_400_000_000, "Q6_K": 520_000_000},
        layer_bytes=(layer,) * 32, embedding_bytes=282_000_000, output_bytes=431_000_000,
        other_bytes=16384)


def plan_for(box: str, model: ModelFacts, ctx: int | None = None) -> Plan:
    """The plan `gemba install plan` makes: on the best shipped profile, else a derived one."""
    facts = load_recorded(box)
    return make_plan(facts, choose_profile(PROFILES, facts).profile, model, ctx)


def statuses(plan: Plan) -> dict[str, str]:
    return {check.name: check.status for check in plan.checks}


# box, failing checks for the embedded model (empty: installable), GPU layers > 0
EMBEDDED = [
    ("atom-e3845-4gb", {"cpu"}, False),
    ("fanless-n100-8gb", set(), False),
    ("i7-ipc-32gb", set(), False),
    ("ipc-rtx-a2000-12gb", set(), True),
    ("rack-l4-24gb", set(), True),
    ("jetson-orin-nx-16gb-10w", set(), True),
    ("jetson-orin-nx-16gb-15w", set(), True),
    ("jetson-orin-nx-16gb-25w", set(), True),
    ("two-gpus-one-hot", {"thermal_gpu0"}, True),
    ("vm-no-sensors", set(), False),
    # Boxes no shipped profile describes: planned on a profile derived from the probe.
    ("ryzen-7840u-fanless-16gb", set(), False),
    ("i5-12400-rtx-3060-12gb", set(), True),
    ("apu2-gx-412tc-no-avx2", {"cpu"}, False),
    ("panel-i3-4010u-2gb-too-little-ram", {"memory"}, False),
]


def test_the_table_covers_every_recorded_box() -> None:
    assert sorted(row[0] for row in EMBEDDED) == recorded_names()


@pytest.mark.parametrize("box, failing, on_gpu", EMBEDDED)
def test_embedded_model_on_every_box(box: str, failing: set[str], on_gpu: bool,
                                     smollm: ModelFacts) -> None:
    plan = plan_for(box, smollm)
    assert {n for n, s in statuses(plan).items() if s == "fail"} == failing
    assert plan.exit_code == (3 if failing else 0)
    assert (plan.value("n_gpu_layers") > 0) == on_gpu
    for key, choice in plan.settings.items():
        assert choice.reason, f"{key} has no reason"
    for check in plan.checks:
        assert check.message


def test_box_without_avx2_is_refused_before_any_illegal_instruction(smollm: ModelFacts) -> None:
    cpu = next(c for c in plan_for("atom-e3845-4gb", smollm).checks if c.name == "cpu")
    assert cpu.status == "fail"
    assert "AVX2" in cpu.message and "illegal instruction" in cpu.message


def test_too_small_box_is_refused_with_needed_and_available_memory() -> None:
    plan = plan_for("fanless-n100-8gb", llama_8b_q4_k())
    memory = next(c for c in plan.checks if c.name == "memory")
    # 8 GB minus the plant's reservation cannot hold 4.6 GiB of weights plus the rest.
    assert memory.status == "fail"
    assert "GiB of RAM" in memory.message and "available" in memory.message
    assert memory.figures["ram_needed_bytes"] > memory.figures["ram_budget_bytes"]
    assert plan.exit_code == 3


def test_tight_memory_shrinks_the_context_and_says_so() -> None:
    model = llama_8b_q4_k()
    roomy = plan_for("i7-ipc-32gb", model, 8192)
    assert roomy.value("n_ctx") == 8192
    facts = load_recorded("i7-ipc-32gb")
    profile = best_match(PROFILES, facts).profile
    # Just short of what the full context needs: the planner must give something up.
    short = roomy.memory.ram_bytes - 200 * 2**20
    squeezed_facts = replace(facts, memory=replace(
        facts.memory, available_bytes=int(profile.memory.reserved_ram_gib * GIB) + short))
    squeezed = make_plan(squeezed_facts, profile, model, 8192)
    assert squeezed.ok
    gave_up = [key for key in ("n_ctx", "n_ubatch", "kv_cache_type")
               if squeezed.value(key) != roomy.value(key)]
    assert gave_up, "the planner must give something up to fit"
    assert "to fit memory" in squeezed.settings["n_ctx"].reason
    assert squeezed.memory.ram_bytes <= squeezed.memory.ram_budget_bytes


def test_vram_too_small_for_every_layer_offloads_only_some() -> None:
    facts = load_recorded("ipc-rtx-a2000-12gb")
    profile = best_match(PROFILES, facts).profile
    gpu = replace(facts.gpus[0], memory_free_bytes=3 * GIB)
    small_vram = replace(facts, nvml=replace(facts.nvml, gpus=(gpu,)))
    plan = make_plan(small_vram, profile, llama_8b_q4_k(), 4096)
    assert plan.ok
    assert 0 < plan.value("n_gpu_layers") < 32
    assert "GPU layers instead of" in plan.settings["n_ctx"].reason
    assert plan.memory.vram_bytes <= plan.memory.vram_budget_bytes


def test_gpu_power_cap_is_the_profiles_within_the_cards_range(smollm: ModelFacts) -> None:
    plan = plan_for("rack-l4-24gb", smollm)
    gpu = load_recorded("rack-l4-24gb").gpus[0]
    cap = plan.value("gpu_power_cap_w")
    assert gpu.power_limit_min_w <= cap <= gpu.power_limit_max_w


def _with_gpu_limits(box: str, low: float, high: float, cap: float) -> tuple:
    facts = load_recorded(box)
    profile = best_match(PROFILES, facts).profile
    gpu = replace(facts.gpus[0], power_limit_min_w=low, power_limit_max_w=high)
    profile = profile.model_copy(update={
        "power": profile.power.model_copy(update={"gpu_cap_w": cap})})
    return replace(facts, nvml=replace(facts.nvml, gpus=(gpu,))), profile


def test_card_that_cannot_reach_the_planned_cap_is_a_warning(smollm: ModelFacts) -> None:
    facts, profile = _with_gpu_limits("ipc-rtx-a2000-12gb", 30.0, 40.0, 45.0)
    plan = make_plan(facts, profile, smollm)
    power = next(c for c in plan.checks if c.name == "power")
    assert plan.value("gpu_power_cap_w") == 40.0  # clamped to what the card allows
    assert power.status == "warn" and "at most 40 W" in power.message


def test_card_that_cannot_be_capped_low_enough_is_refused(smollm: ModelFacts) -> None:
    facts, profile = _with_gpu_limits("ipc-rtx-a2000-12gb", 60.0, 70.0, 45.0)
    plan = make_plan(facts, profile, smollm)
    power = next(c for c in plan.checks if c.name == "power")
    assert power.status == "fail"
    assert "cannot be capped below 60 W" in power.message and "45 W" in power.message
    assert plan.exit_code == 3


def test_hot_gpu_names_the_measured_temperature_and_the_limit(smollm: ModelFacts) -> None:
    check = next(c for c in plan_for("two-gpus-one-hot", smollm).checks
                 if c.name == "thermal_gpu0")
    assert check.status == "fail"
    assert "84 °C" in check.message and "warning limit" in check.message


def test_throttling_gpu_is_a_warning(smollm: ModelFacts) -> None:
    check = next(c for c in plan_for("two-gpus-one-hot", smollm).checks
                 if c.name == "thermal_gpu1")
    assert check.status == "warn" and "throttling" in check.message


def test_vm_without_sensors_is_expected_to_have_none(smollm: ModelFacts) -> None:
    check = next(c for c in plan_for("vm-no-sensors", smollm).checks
                 if c.name == "thermal_cpu")
    assert check.status == "pass" and "as expected" in check.message


def test_box_that_should_have_sensors_but_shows_none_is_unverified(smollm: ModelFacts) -> None:
    facts = replace(load_recorded("i7-ipc-32gb"), temperatures=())
    profile = best_match(PROFILES, load_recorded("i7-ipc-32gb")).profile
    check = next(c for c in make_plan(facts, profile, smollm).checks if c.name == "thermal_cpu")
    assert check.status == "warn"
    assert "unknown" in check.message and "precaution" in check.message


def test_jetson_offloads_everything_and_counts_it_against_ram(smollm: ModelFacts) -> None:
    plan = plan_for("jetson-orin-nx-16gb-15w", smollm)
    assert plan.value("n_gpu_layers") > smollm.layers
    assert plan.memory.vram_bytes == 0  # unified memory: all of it is RAM
    assert plan.memory.ram_bytes > smollm.weight_bytes


def test_more_watts_allow_more_threads_on_jetson(smollm: ModelFacts) -> None:
    threads = [plan_for(f"jetson-orin-nx-16gb-{mode}", smollm).value("n_threads")
               for mode in ("10w", "15w", "25w")]
    assert threads == sorted(threads) and threads[0] < threads[-1]


def test_thread_cap_leaves_cores_to_the_plant(smollm: ModelFacts) -> None:
    facts = load_recorded("rack-l4-24gb")
    profile = best_match(PROFILES, facts).profile
    plan = plan_for("rack-l4-24gb", smollm)
    assert plan.value("n_threads") <= profile.model.thread_cap
    assert plan.value("n_threads") <= (facts.cpu.physical_cores or facts.cpu.logical_cores)


def test_context_never_exceeds_model_or_profile(smollm: ModelFacts) -> None:
    plan = plan_for("fanless-n100-8gb", smollm, 100_000)
    facts = load_recorded("fanless-n100-8gb")
    profile = best_match(PROFILES, facts).profile
    assert plan.value("n_ctx") <= min(profile.model.max_context, smollm.context_train)


def test_disallowed_quantization_is_refused(smollm: ModelFacts) -> None:
    plan = plan_for("fanless-n100-8gb", replace(smollm, quantization="F16"))
    check = next(c for c in plan.checks if c.name == "quantization")
    assert check.status == "fail" and "F16" in check.message


def test_full_disk_is_refused(smollm: ModelFacts) -> None:
    facts = load_recorded("i7-ipc-32gb")
    profile = best_match(PROFILES, facts).profile
    full = replace(facts, disk=replace(facts.disk, free_bytes=smollm.file_bytes))
    check = next(c for c in make_plan(full, profile, smollm).checks if c.name == "disk")
    assert check.status == "fail" and "would remain" in check.message


def test_kv_cache_estimate_matches_llama_cpp_for_the_embedded_model(smollm: ModelFacts) -> None:
    # llama.cpp reports 11.25 / 45.00 / 180.00 MiB of f16 KV cache at these contexts.
    assert [smollm.kv_bytes(n) / 2**20 for n in (512, 2048, 8192)] == [11.25, 45.0, 180.0]


def test_same_inputs_same_plan(smollm: ModelFacts) -> None:
    assert plan_for("i7-ipc-32gb", smollm) == plan_for("i7-ipc-32gb", smollm)
