"""The plan, table-driven over every recorded box: what an expert would decide, and why.

Pure: recorded hardware + a shipped profile + model facts in, settings and checks out. The
embedded model's facts come from its real GGUF file; a larger model is described by its facts.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from installer.derive import choose_profile
from installer.gguf_info import ModelFacts
from installer.plan import GIB, MIB, PARALLEL_TARGET, Plan, make_plan
from installer.profiles import best_match, load_profiles
from tests.fakes.hardware import load_recorded, recorded_names

PROFILES = load_profiles()


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


def with_ram_budget(box: str, budget_bytes: int) -> tuple:
    """The recorded box, its available RAM set so that the plan's RAM budget is `budget_bytes`."""
    facts = load_recorded(box)
    profile = best_match(PROFILES, facts).profile
    reserved = int(profile.memory.reserved_ram_gib * GIB)
    return replace(facts, memory=replace(facts.memory, available_bytes=reserved + budget_bytes,
                                         cgroup_limit_bytes=None)), profile


def test_tight_memory_shrinks_the_context_and_says_so() -> None:
    model = llama_8b_q4_k()
    facts = load_recorded("i7-ipc-32gb")
    profile = best_match(PROFILES, facts).profile
    roomy = make_plan(facts, profile, model, 8192, 1)
    assert roomy.value("n_ctx") == 8192
    # Just short of what the full context needs for one answer: something must give.
    squeezed_facts, _ = with_ram_budget("i7-ipc-32gb", roomy.memory.ram_bytes - 200 * MIB)
    squeezed = make_plan(squeezed_facts, profile, model, 8192)
    assert squeezed.ok
    gave_up = [key for key in ("n_ctx", "n_ubatch", "kv_cache_type")
               if squeezed.value(key) != roomy.value(key)]
    assert gave_up, "the planner must give something up to fit"
    assert "to fit memory" in squeezed.settings["n_ctx"].reason
    assert squeezed.memory.ram_bytes <= squeezed.memory.ram_budget_bytes
    # The context comes first: no memory is left over for a second answer at once.
    assert squeezed.value("n_parallel") == 1
    assert "leaves room for only 1" in squeezed.settings["n_parallel"].reason


def slot_kv_bytes(plan: Plan, model: ModelFacts) -> int:
    """One answer slot's KV cache at the plan's own settings."""
    return model.kv_bytes(plan.value("n_ctx"), plan.value("kv_cache_type"),
                          plan.value("n_ubatch"))


def test_big_memory_box_decodes_four_answers_at_once_and_names_the_kv_cache() -> None:
    model = llama_8b_q4_k()
    plan = plan_for("i7-ipc-32gb", model, 8192)
    per_slot = slot_kv_bytes(plan, model)
    assert plan.value("n_parallel") == PARALLEL_TARGET == 4
    assert plan.memory.kv_cpu_bytes == 4 * per_slot
    reason = plan.settings["n_parallel"].reason
    assert reason.startswith("4 answers at once")
    assert f"{per_slot / GIB:.1f} GiB per slot" in reason
    assert f"{4 * per_slot / GIB:.1f} GiB for 4" in reason
    assert f"{plan.memory.ram_budget_bytes / GIB:.1f} GiB RAM budget" in reason


def test_small_model_names_its_slot_kv_cache_in_mib(smollm: ModelFacts) -> None:
    plan = plan_for("i7-ipc-32gb", smollm)
    per_slot = slot_kv_bytes(plan, smollm)
    assert plan.value("n_parallel") == 4
    assert f"KV cache {per_slot / MIB:.0f} MiB per slot, {4 * per_slot / MIB:.0f} MiB for 4" \
        in plan.settings["n_parallel"].reason


@pytest.mark.parametrize("spare_slots", [0, 1, 2, 3])
def test_memory_for_the_context_but_not_four_slots_plans_fewer(spare_slots: int) -> None:
    model = llama_8b_q4_k()
    facts = load_recorded("i7-ipc-32gb")
    profile = best_match(PROFILES, facts).profile
    one = make_plan(facts, profile, model, 8192, 1)
    per_slot = slot_kv_bytes(one, model)
    # Room for one answer plus `spare_slots` more KV caches and half of another.
    budget = one.memory.ram_bytes + int((spare_slots + 0.5) * per_slot)
    tight, _ = with_ram_budget("i7-ipc-32gb", budget)
    plan = make_plan(tight, profile, model, 8192)
    expected = spare_slots + 1
    assert plan.value("n_parallel") == expected
    # Slots never cost the single answer's context, precision or micro-batch.
    for key in ("n_ctx", "kv_cache_type", "n_ubatch"):
        assert plan.value(key) == one.value(key), key
    assert plan.memory.ram_bytes <= plan.memory.ram_budget_bytes
    assert plan.memory.kv_cpu_bytes == expected * per_slot
    reason = plan.settings["n_parallel"].reason
    if expected < 4:
        assert "(4 wanted)" in reason
        assert f"each slot's KV cache is {per_slot / GIB:.1f} GiB" in reason
        room = "only 1" if expected == 1 else str(expected)
        assert reason.endswith(f"RAM budget leaves room for {room}")
    else:
        assert reason.startswith("4 answers at once:")


def test_memory_estimate_grows_with_the_slots() -> None:
    model = llama_8b_q4_k()
    facts = load_recorded("i7-ipc-32gb")
    profile = best_match(PROFILES, facts).profile
    plans = [make_plan(facts, profile, model, 8192, n) for n in (1, 2, 4)]
    per_slot = slot_kv_bytes(plans[0], model)
    assert [p.value("n_parallel") for p in plans] == [1, 2, 4]
    assert [p.memory.kv_cpu_bytes for p in plans] == [per_slot, 2 * per_slot, 4 * per_slot]
    assert plans[2].memory.ram_bytes - plans[0].memory.ram_bytes >= 3 * per_slot
    memory = next(c for c in plans[2].checks if c.name == "memory")
    assert memory.figures["n_parallel"] == 4
    assert memory.figures["ram_needed_bytes"] == plans[2].memory.ram_bytes


def test_vram_decides_the_slots_when_every_layer_is_on_the_gpu() -> None:
    model = llama_8b_q4_k()
    plan = plan_for("ipc-rtx-a2000-12gb", model, 8192)
    n = plan.value("n_parallel")
    assert plan.value("n_gpu_layers") > model.layers  # slots do not push layers off the GPU
    assert 1 <= n < 4
    assert plan.memory.vram_bytes <= plan.memory.vram_budget_bytes
    # The most that fit: one more slot's KV cache (all on the GPU) would not.
    assert plan.memory.vram_bytes + slot_kv_bytes(plan, model) > plan.memory.vram_budget_bytes
    assert plan.memory.kv_gpu_bytes == n * slot_kv_bytes(plan, model)
    assert plan.settings["n_parallel"].reason.endswith(f"VRAM budget leaves room for {n}")


def plan_for_parallel(box: str, model: ModelFacts, wanted: int) -> Plan:
    facts = load_recorded(box)
    return make_plan(facts, choose_profile(PROFILES, facts).profile, model, None, wanted)


def test_requested_slots_replace_the_target_and_memory_still_caps_them(
        smollm: ModelFacts) -> None:
    eight = plan_for_parallel("rack-l4-24gb", smollm, 8)
    assert eight.value("n_parallel") == 8
    assert eight.settings["n_parallel"].reason.startswith("8 answers at once, as requested")
    assert plan_for_parallel("rack-l4-24gb", smollm, 1).value("n_parallel") == 1
    capped = plan_for_parallel("ipc-rtx-a2000-12gb", llama_8b_q4_k(), 64)
    assert 1 <= capped.value("n_parallel") < 64
    assert "(64 wanted)" in capped.settings["n_parallel"].reason


def test_model_that_does_not_fit_plans_one_answer_and_says_why() -> None:
    plan = plan_for("fanless-n100-8gb", llama_8b_q4_k())
    assert plan.value("n_parallel") == 1
    reason = plan.settings["n_parallel"].reason
    assert "does not fit the RAM budget even with one slot" in reason


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


@pytest.mark.parametrize("box", ["i7-ipc-32gb", "vm-no-sensors", "ipc-rtx-a2000-12gb",
                                 "jetson-orin-nx-16gb-15w"])
def test_flash_attention_is_planned_on_for_cpu_and_gpu(box: str, smollm: ModelFacts) -> None:
    plan = plan_for(box, smollm)
    assert plan.value("flash_attn") is True
    assert plan.settings["flash_attn"].reason.startswith("on: ")


def test_cpu_plan_counts_no_attention_score_buffer(smollm: ModelFacts) -> None:
    """With flash attention the CPU's compute memory is far below the score buffer plain
    attention would need for the planned context (context x micro-batch x heads x 4 bytes)."""
    plan = plan_for("i7-ipc-32gb", smollm, 8192)
    scores = plan.value("n_ctx") * plan.value("n_ubatch") * smollm.heads * 4
    assert plan.value("n_ctx") == 8192 and plan.value("n_gpu_layers") == 0
    assert plan.memory.compute_cpu_bytes < scores / 4
