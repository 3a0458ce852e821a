"""The static memory planner: lifetimes, aliasing, in-place ops, windowed overlap, and its invariants."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from aot_models import convert, random_inputs
from conftest import require_tools

from edgekit.aot.hostcheck import host_check
from edgekit.aot.lower import overlap_distance
from edgekit.aot.planner import Step, plan_memory


def _lifetimes(steps, sizes, model_input, model_output):
    """[first, last] step of every tensor, computed independently of the planner."""
    n = len(steps)
    life = {}
    for i, s in enumerate(steps):
        for t in (s.write, *s.reads):
            lo, hi = life.get(t, (i, i))
            life[t] = (min(lo, i), max(hi, i))
    life[model_input] = (-1, life.get(model_input, (-1, -1))[1])
    life[model_output] = (life[model_output][0], n)
    return life


def _check(plan, steps, sizes, model_input=0, model_output=None):
    """No two tensors alive at the same step share a byte, unless they are aliases or an allowed overlap pair."""
    model_output = len(steps) if model_output is None else model_output
    life = _lifetimes(steps, sizes, model_input, model_output)
    ts = [t for t in sizes if plan.location(t)[0] == "arena"]
    pairs = {(s.write, s.overlap[0]): s.overlap[1] for s in steps if s.overlap}
    for a in ts:
        for b in ts:
            if a >= b or plan.tensor_buffer[a] == plan.tensor_buffer[b]:
                continue
            (fa, la), (fb, lb) = life[a], life[b]
            if la < fb or lb < fa:
                continue
            oa, ob = plan.location(a)[1], plan.location(b)[1]
            if oa + sizes[a] <= ob or ob + sizes[b] <= oa:
                continue
            if (a, b) in pairs:
                assert ob - oa >= pairs[(a, b)]
            elif (b, a) in pairs:
                assert oa - ob >= pairs[(b, a)]
            else:
                raise AssertionError(f"tensors {a} {life[a]} @{oa} and {b} {life[b]} @{ob} clash")
    _check_buffers(plan, steps, sizes)


def _check_buffers(plan, steps, sizes):
    bufs = plan.buffers
    allowed = {}
    for s in steps:
        if s.overlap:
            allowed[(plan.tensor_buffer[s.write], plan.tensor_buffer[s.overlap[0]])] = s.overlap[1]
    for a in range(len(bufs)):
        for b in range(a + 1, len(bufs)):
            A, B = bufs[a], bufs[b]
            if A.home != "arena" or B.home != "arena" or A.last < B.first or B.last < A.first:
                continue
            if A.offset + A.size <= B.offset or B.offset + B.size <= A.offset:
                continue
            if (a, b) in allowed:
                assert B.offset - A.offset >= allowed[(a, b)]
            elif (b, a) in allowed:
                assert A.offset - B.offset >= allowed[(b, a)]
            else:
                raise AssertionError(f"buffers {A} and {B} clash")
    assert plan.arena_bytes >= max((b.offset + b.size for b in bufs if b.home == "arena"), default=0)
    for t in sizes:
        assert t in plan.tensor_buffer


def test_chain_reuses_two_buffers_and_aliases_reshape():
    # in(0) -> 1 -> 2 -> reshape 3 -> 4 -> out(5)
    sizes = {0: 10, 1: 100, 2: 60, 3: 60, 4: 40, 5: 8}
    steps = [Step((0,), 1), Step((1,), 2), Step((2,), 3, alias_of=2), Step((3,), 4), Step((4,), 5)]
    plan = plan_memory(steps, sizes, 0, 5)
    _check(plan, steps, sizes)
    assert plan.lower_bound_bytes == 160  # tensors 1 and 2 alive together
    assert plan.arena_bytes == 160
    assert plan.location(2) == plan.location(3)  # RESHAPE costs nothing
    assert plan.location(0) == ("input", 0) and plan.location(5) == ("output", 0)
    assert plan.unshared_bytes == 100 + 60 + 60 + 40
    assert plan.aliased_steps == 1


def test_in_place_only_when_the_input_dies():
    # 1 -> add(1, 1) -> 2 (1 dies: in place); 2 -> lut -> 3, but 2 is read again by step 3
    sizes = {0: 16, 1: 16, 2: 16, 3: 16, 4: 16}
    steps = [Step((0,), 1), Step((1,), 2, inplace=(1,)), Step((2,), 3, inplace=(2,)), Step((2, 3), 4)]
    plan = plan_memory(steps, sizes, 0, 4)
    _check(plan, steps, sizes)
    assert plan.location(1) == plan.location(2)
    assert plan.location(3) != plan.location(2)
    assert plan.arena_bytes == 32


def test_never_in_place_over_the_callers_input():
    sizes = {0: 16, 1: 16}
    plan = plan_memory([Step((0,), 1, inplace=(0,))], sizes, 0, 1)
    assert plan.location(0) == ("input", 0) and plan.location(1) == ("output", 0)


def test_a_tensor_nobody_reads_still_gets_its_own_memory():
    sizes = {0: 8, 1: 50, 2: 50, 3: 50, 4: 8}
    steps = [Step((0,), 1), Step((1,), 2), Step((1,), 3), Step((3,), 4)]  # 2 is never read
    plan = plan_memory(steps, sizes, 0, 4)
    _check(plan, steps, sizes)
    assert plan.location(2) != plan.location(1)


def test_overlap_distance_by_hand():
    # 3x3, stride 1, SAME on 32x32x16 -> 32x32x16: pixel (oy, ox) reads from ((oy-1)*32 + ox-1)*16 on;
    # writing it ends at (oy*32 + ox + 1)*16, so D = 34 pixels * 16 bytes
    assert overlap_distance((32, 32), 16, (32, 32), 16, (1, 1), (1, 1)) == 34 * 16
    # 1x1 pointwise 8 -> 16 channels, 4x4: last pixel P=15 ends at 16*16, reads from 15*8
    assert overlap_distance((4, 4), 8, (4, 4), 16, (1, 1), (0, 0)) == 16 * 16 - 15 * 8
    # stride 2 shrinking: the first pixel dominates
    assert overlap_distance((8, 8), 4, (4, 4), 4, (2, 2), (0, 0)) == 4


def test_overlap_places_output_before_its_dying_input():
    sizes = {0: 4, 1: 1000, 2: 1000, 3: 4}
    steps = [Step((0,), 1), Step((1,), 2, overlap=(1, 100)), Step((2,), 3)]
    plan = plan_memory(steps, sizes, 0, 3)
    _check(plan, steps, sizes)
    assert plan.arena_bytes == 1100 and plan.lower_bound_bytes == 2000
    assert plan.overlapped_steps == 1


@pytest.mark.parametrize("seed", range(20))
def test_random_graphs_satisfy_the_invariants(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 25))
    sizes = {0: int(rng.integers(1, 500))}
    steps = []
    for i in range(n):
        t = i + 1
        sizes[t] = int(rng.integers(1, 500))
        reads = tuple(sorted({int(rng.integers(0, t)) for _ in range(int(rng.integers(1, 3)))}))
        kind = rng.integers(0, 4)
        alias = reads[0] if kind == 1 and reads[0] != 0 else None
        if alias is not None:
            sizes[t] = sizes[alias]
        inplace = tuple(r for r in reads if sizes[r] == sizes[t]) if kind == 2 else ()
        overlap = (reads[-1], int(rng.integers(1, 300))) if kind == 3 else None
        steps.append(Step(reads, t, alias_of=alias, inplace=inplace, overlap=overlap))
    plan = plan_memory(steps, sizes, 0, n)
    _check(plan, steps, sizes)


def test_windowed_chain_with_overlap_is_bit_exact(tmp_path):
    """Conv, depthwise and pooling chains where outputs overlap dying inputs, against tflite-micro."""
    require_tools("gcc")
    rng = np.random.default_rng(7)
    w1 = tf.constant(rng.normal(size=(3, 3, 3, 8)).astype(np.float32) * 0.3)
    dw = tf.constant(rng.normal(size=(3, 3, 8, 1)).astype(np.float32) * 0.3)
    w2 = tf.constant(rng.normal(size=(1, 1, 8, 16)).astype(np.float32) * 0.3)
    w3 = tf.constant(rng.normal(size=(4, 4, 16, 8)).astype(np.float32) * 0.3)

    def f(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"))
        y = tf.nn.relu(tf.nn.depthwise_conv2d(y, dw, [1, 1, 1, 1], "SAME"))
        y = tf.nn.relu(tf.nn.conv2d(y, w2, 1, "SAME"))
        y = tf.nn.max_pool2d(y, 3, 1, "SAME")
        y = tf.nn.conv2d(y, w3, 2, "SAME")
        return tf.nn.avg_pool2d(y, 3, 2, "VALID")

    tfl = convert(f, [1, 15, 13, 3])
    r = host_check(tfl, random_inputs(tfl, 30, seed=2), tmp_path)
    assert r.bit_exact_fraction == 1.0, r.to_dict()
    assert r.codegen.overlapped_ops >= 3
    assert r.codegen.arena_bytes < r.codegen.arena_lower_bound_bytes


@pytest.mark.parametrize("seed", range(8))
def test_random_windowed_chains_bit_exact(seed, tmp_path):
    """Seeded random chains of conv / depthwise / pooling with random kernels, strides, paddings and
    dilations: whatever the planner overlaps, every output byte must match tflite-micro."""
    require_tools("gcc")
    rng = np.random.default_rng(100 + seed)
    h, w, c = int(rng.integers(9, 20)), int(rng.integers(9, 20)), int(rng.integers(1, 6))
    layers = []
    ch = c
    for _ in range(int(rng.integers(3, 7))):
        kind = rng.choice(["conv", "dw", "avg", "max"])
        k = int(rng.integers(1, 5))
        stride = int(rng.choice([1, 1, 2]))
        pad = str(rng.choice(["SAME", "VALID"]))
        dil = int(rng.choice([1, 1, 2])) if stride == 1 and kind in ("conv", "dw") else 1
        if kind == "conv":
            oc = int(rng.integers(1, 12))
            layers.append((kind, tf.constant(rng.normal(size=(k, k, ch, oc)).astype(np.float32) * 0.4), stride, pad, dil, k))
            ch = oc
        elif kind == "dw":
            dm = int(rng.choice([1, 1, 2]))
            layers.append((kind, tf.constant(rng.normal(size=(k, k, ch, dm)).astype(np.float32) * 0.4), stride, pad, dil, k))
            ch *= dm
        else:
            layers.append((kind, None, stride, pad, 1, max(k, 2)))

    def f(x):
        for kind, wt, s, p, d, k in layers:
            if x.shape[1] < k * d or x.shape[2] < k * d:
                p = "SAME"  # keep VALID from shrinking the map to nothing
            if kind == "conv":
                x = tf.nn.relu(tf.nn.conv2d(x, wt, s, p, dilations=d))
            elif kind == "dw":
                x = tf.nn.depthwise_conv2d(x, wt, [1, s, s, 1], p, dilations=[d, d])
            elif kind == "avg":
                x = tf.nn.avg_pool2d(x, k, s, p)
            else:
                x = tf.nn.max_pool2d(x, k, s, p)
        return x

    tfl = convert(f, [1, h, w, c])
    r = host_check(tfl, random_inputs(tfl, 12, seed=seed), tmp_path)
    assert r.bit_exact_fraction == 1.0, (layers, r.to_dict())
