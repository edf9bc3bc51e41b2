"""The GEMM floor of the MaskInversion speed benchmark (issue 30 item 3): pure arithmetic with
fake rates, plus one tiny real product."""

import math

import pytest

from benchmarks.gemm_floor import (
    Product,
    chunk_sizes,
    floor_from_rates,
    floor_ratio,
    measure_floor,
    product_shapes,
    time_product,
    tokens,
)
from benchmarks.maskinversion_flops import factorized_macs
from benchmarks.maskinversion_speed import add_floor, table


def test_chunks_follow_invert():
    assert chunk_sizes(10, 4) == [4, 4, 2]
    assert chunk_sizes(3, 4) == [3]
    assert chunk_sizes(100, 128) == [100]
    from regionlab.region.maskinversion import MASK_CHUNK

    assert chunk_sizes(9, None) == chunk_sizes(9, MASK_CHUNK)


@pytest.mark.parametrize("size,masks,iters,chunk", [(32, 1, 1, None), (224, 10, 10, 4),
                                                      (448, 100, 10, 128), (224, 3, 0, 2)])
def test_shapes_carry_exactly_the_flops_count(size, masks, iters, chunk):
    shapes = product_shapes(size, masks, iters, chunk)
    want = sum(factorized_macs(tokens(size), 768, masks, iters, 12).values())
    assert sum(s.macs for s in shapes) == want


def test_tiny_setting_gmac_matches_the_flops_module():
    # 32 px ViT-B/16: N = 5 tokens, one mask, one iteration
    n, c = 5, 768
    want = 12 * (12 * n * c * c + 2 * n * n * c) + 3 * (n * 4 * c * c + n * n * c)
    res = measure_floor(32, 1, 1, None, timer=lambda s, threads, repeats: 1.0)
    assert math.isclose(res["gmac"], round(want / 1e9, 3))


def test_constant_rate_gives_the_exact_ratio():
    shapes = product_shapes(224, 10, 10, 4)
    rate = 50e9  # MAC/s for every shape
    res = floor_from_rates(shapes, {s.key: rate for s in shapes})
    assert math.isclose(res["gemm_rate_gmacs"], 50.0)
    assert math.isclose(res["floor_s"], res["gmac"] * 1e9 / rate)
    assert math.isclose(floor_ratio(2 * res["floor_s"], res), 2.0)
    assert floor_ratio(None, res) is None


def test_mixed_rates_are_a_mac_weighted_harmonic_mean():
    a = Product("a", 1, 10, 10, 10, count=3)  # 3000 MACs at 1000 MAC/s -> 3 s
    b = Product("b", 2, 10, 10, 10)  # 2000 MACs at 4000 MAC/s -> 0.5 s
    res = floor_from_rates([a, b], {a.key: 1000.0, b.key: 4000.0})
    assert math.isclose(res["floor_s"], 3.5)
    assert math.isclose(res["gmac"] / res["floor_s"], res["gemm_rate_gmacs"])
    assert math.isclose(res["gemm_rate_gmacs"] * 1e9, 5000 / 3.5)


def test_fake_timer_rate_reaches_the_row():
    def timer(s, threads, repeats):  # every product at 20 GMAC/s
        return s.batch * s.m * s.k * s.n / 20e9

    floor = measure_floor(224, 3, 2, 2, threads=1, timer=timer)
    assert floor["chunks"] == [2, 1]
    assert math.isclose(floor["gemm_rate_gmacs"], 20.0)
    row = {"size": 224, "masks": 3, "iterations": 2,
           "factorized": {"seconds": 1.3 * floor["floor_s"], "engine_used": "factorized"}}
    add_floor(row, floor)
    assert math.isclose(row["floor_ratio"], 1.3, rel_tol=1e-3)
    assert "1.30" in table([row])
    old = {"size": 224, "masks": 3, "iterations": 2, "factorized": {"seconds": 1.0}}
    assert "not measured" in table([old])


def test_a_real_tiny_product_is_timed():
    for s in (Product("mm", 1, 16, 8, 4), Product("bmm", 3, 16, 8, 4, trans_b=True)):
        assert time_product(s, threads=1, repeats=2) > 0
