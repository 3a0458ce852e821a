"""Memory estimate against a target's budget, and the budget check (exit 3)."""

from __future__ import annotations

import dataclasses

import pytest

from edgekit import memory
from edgekit.errors import BudgetError
from edgekit.targets import get_target
from edgekit.tflite_model import read_model, short_layer_name
from edgekit.tflm_host import ArenaMeasurement, measure_arena
from test_tflm_models import digits_tflite


@pytest.fixture(scope="module")
def digits(digits_dir):
    tfl = digits_tflite(str(digits_dir))
    return read_model(tfl, name="digits.tflite"), measure_arena(tfl)


def test_mcu_estimate_adds_up_from_its_documented_parts(digits):
    info, arena = digits
    est = memory.estimate(info, get_target("cortex-m4"), arena)
    bd = est.breakdown
    assert est.flash_bytes == info.size_bytes + memory.TFLM_CORE_FLASH + sum(memory.TFLM_KERNEL_FLASH.get(op, memory.TFLM_KERNEL_FLASH_DEFAULT) for op in info.ops)
    assert est.flash_bytes == sum(v["bytes"] for k, v in bd.items() if k.startswith("flash."))
    assert est.ram_bytes == sum(v["bytes"] for k, v in bd.items() if k.startswith("ram."))
    assert bd["ram.arena"]["bytes"] == est.arena_alloc_bytes >= max(arena.used_bytes, arena.min_bytes) + 1024
    assert est.arena_alloc_bytes % 16 == 0
    assert all("source" in v for v in bd.values())
    assert (est.arena_bytes, est.arena_min_bytes) == (arena.used_bytes, arena.min_bytes)
    assert est.fits and est.to_dict()["fits"] is True
    top_w = est.largest_layers["weights"][0]
    assert top_w["bytes"] == max(o.weight_bytes for o in info.operators) and top_w["op"] in info.ops


def test_litert_estimate(digits):
    info, _ = digits
    est = memory.estimate(info, get_target("rpi4"), None)
    assert est.flash_bytes == info.size_bytes
    assert est.ram_bytes == info.size_bytes + info.activation_bytes + memory.LITERT_RUNTIME_RAM
    assert est.arena_bytes is None and est.fits
    memory.check_budget(est, get_target("rpi4"))


def test_over_budget_names_both_numbers_and_the_biggest_layers(digits):
    info, arena = digits
    tiny = dataclasses.replace(get_target("cortex-m4"), flash_bytes=20_000, ram_bytes=4_096)
    est = memory.estimate(info, tiny, arena)
    assert not est.fits and not est.fits_flash and not est.fits_ram
    with pytest.raises(BudgetError) as e:
        memory.check_budget(est, tiny)
    msg = str(e.value)
    assert e.value.exit_code == 3 and "\n" not in msg
    assert f"flash {est.flash_bytes:,} B > budget 20,000 B" in msg
    assert f"RAM {est.ram_bytes:,} B > budget 4,096 B" in msg
    assert short_layer_name(est.largest_layers["weights"][0]["layer"]) in msg
    assert short_layer_name(est.largest_layers["activations"][0]["layer"]) in msg


def test_only_ram_over_budget(digits):
    info, arena = digits
    t = dataclasses.replace(get_target("cortex-m4"), ram_bytes=2_048)
    with pytest.raises(BudgetError) as e:
        memory.check_budget(memory.estimate(info, t, arena), t)
    assert "RAM" in str(e.value) and "flash" not in str(e.value).split("(")[0].replace("model does not fit", "")


def test_arena_margin_is_documented_size():
    assert memory.arena_with_margin(ArenaMeasurement(85_264, 85_264)) == (85_264 + 8_526 + 15) // 16 * 16
    assert memory.arena_with_margin(ArenaMeasurement(1_504, 1_936)) == 1_936 + 1_024
