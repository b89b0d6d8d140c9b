"""Block plans: greedy packing to a KL budget, shared shuffles, padding that is exactly neutral."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxrec
from jaxrec.codec.blocks import BlockPlan, plan_blocks, single_block
from jaxrec.coders.sp.partition import Partition
from jaxrec.core import prng
from jaxrec.core.errors import InvalidArgumentError


def _check_greedy(plan: BlockPlan, kl_dim: np.ndarray, budget: float, cap: int) -> None:
    """The defining properties of COMBINER's greedy packing, checked block by block."""
    assert np.array_equal(np.sort(plan.order), np.arange(kl_dim.size))
    starts = np.concatenate([[0], np.cumsum(plan.sizes)])
    sums = [kl_dim[plan.order[a:b]].sum() for a, b in zip(starts[:-1], starts[1:])]
    np.testing.assert_allclose(plan.block_kl, sums, rtol=1e-12)
    for b, (a, e) in enumerate(zip(starts[:-1], starts[1:])):
        assert 1 <= e - a <= cap
        assert sums[b] <= budget or e - a == 1  # only a lone dimension may exceed the budget
        if e < kl_dim.size:  # the block was closed because the next dimension did not fit
            assert e - a == cap or sums[b] + kl_dim[plan.order[e]] > budget


@settings(max_examples=60, deadline=None)
@given(
    kl=st.lists(st.floats(0.0, 6.0), min_size=1, max_size=60),
    budget=st.floats(0.5, 12.0),
    cap=st.one_of(st.none(), st.integers(1, 8)),
)
def test_greedy_packing_properties(kl, budget, cap):
    kl_dim = np.array(kl)
    plan = plan_blocks(kl_dim, budget, max_block_size=cap, shuffle=False)  # packing is order-agnostic
    _check_greedy(plan, kl_dim, budget, kl_dim.size if cap is None else cap)
    assert plan.budget_bits == budget and plan.dim == kl_dim.size


def test_shuffle_is_a_shared_key_permutation():
    kl_dim = np.linspace(0.1, 2.0, 40)
    a, b = plan_blocks(kl_dim, 4.0, key=3), plan_blocks(kl_dim, 4.0, key=3)
    c = plan_blocks(kl_dim, 4.0, key=4)
    assert np.array_equal(a.order, b.order) and a.fingerprint == b.fingerprint
    assert not np.array_equal(a.order, c.order) and a.fingerprint != c.fingerprint
    np.testing.assert_array_equal(a.order, np.asarray(jax.random.permutation(prng.as_key(3), 40)))
    plain = plan_blocks(kl_dim, 4.0, shuffle=False)
    np.testing.assert_array_equal(plain.order, np.arange(40))


def test_known_packing():
    # budget 3, cap 4: [1, 1] | [2.5] | [0.6, 0.5, 0.5, 0.5] hits the cap | [0.5] | [4] alone, over budget | [0]
    plan = plan_blocks([1.0, 1.0, 2.5, 0.6, 0.5, 0.5, 0.5, 0.5, 4.0, 0.0], 3.0, shuffle=False, max_block_size=4)
    np.testing.assert_array_equal(plan.sizes, [2, 1, 4, 1, 1, 1])
    np.testing.assert_allclose(plan.block_kl, [2.0, 2.5, 2.1, 0.5, 4.0, 0.0])
    assert plan.max_size == 4 and plan.num_blocks == 6
    np.testing.assert_array_equal(plan.mask.sum(axis=1), plan.sizes)
    np.testing.assert_array_equal(plan.index[2], [3, 4, 5, 6])


def test_single_block_and_validation():
    plan = single_block(5)
    assert plan.num_blocks == 1 and plan.max_size == 5 and plan.budget_bits is None
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InvalidArgumentError, match="dim"):
            single_block(bad)
    with pytest.raises(InvalidArgumentError, match="kl_per_dim"):
        plan_blocks([1.0, -0.5], 3.0)
    with pytest.raises(InvalidArgumentError, match="kl_per_dim"):
        plan_blocks([1.0, np.nan], 3.0)
    with pytest.raises(InvalidArgumentError, match="budget_bits"):
        plan_blocks([1.0], 0.0)
    with pytest.raises(InvalidArgumentError, match="max_block_size"):
        plan_blocks([1.0], 2.0, max_block_size=0)
    with pytest.raises(InvalidArgumentError, match="permutation"):
        BlockPlan(order=np.array([0, 0]), sizes=np.array([2]))
    with pytest.raises(InvalidArgumentError, match="sum"):
        BlockPlan(order=np.array([1, 0]), sizes=np.array([1]))


def _pair(dim, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    prior = jaxrec.DiagGaussian(jax.random.normal(k1, (dim,)), jnp.exp(0.3 * jax.random.normal(k2, (dim,))))
    targets = jaxrec.DiagGaussian(
        prior.loc + 0.5 * jax.random.normal(k2, (3, dim)), 0.4 * prior.scale * jnp.ones((3, dim))
    )
    return targets, prior


def test_split_merge_and_neutral_padding():
    plan = plan_blocks(np.arange(1.0, 12.0), 7.0, key=1)  # unequal block sizes -> padding
    assert not plan.mask.all()
    targets, prior = _pair(11)
    tb, pb = plan.split(targets, prior)
    assert tb.loc.shape == (3, plan.num_blocks, plan.max_size) and pb.loc.shape == (plan.num_blocks, plan.max_size)
    np.testing.assert_array_equal(plan.merge(tb.loc), targets.loc)
    np.testing.assert_array_equal(plan.merge(pb.scale), prior.scale)
    pad = ~plan.mask
    np.testing.assert_array_equal(tb.loc[:, pad], jnp.broadcast_to(pb.loc[pad], (3, pad.sum())))
    # padded coordinates add exactly nothing to KL, D_inf and the log ratio of any point
    kl_pd = jaxrec.kl(tb, pb, per_dim=True)
    assert float(jnp.abs(kl_pd[:, pad]).max()) == 0.0
    assert float(jnp.abs(jaxrec.log_sup_ratio(tb, pb, per_dim=True)[:, pad]).max()) == 0.0
    xs = pb.sample(jax.random.key(5), (7,))  # (7, B, S)
    lr = jaxrec.core.distributions.log_ratio_per_dim(tb, pb, xs[:, None])  # (7, 3, B, S)
    assert float(jnp.abs(lr[..., pad]).max()) == 0.0
    np.testing.assert_allclose(jaxrec.kl(tb, pb).sum(-1), jaxrec.kl(targets, prior), rtol=1e-5)


@pytest.mark.slow
def test_padded_block_gives_the_unpadded_code():
    """Padding is invisible to a coder: candidates are prefix-stable and padding has log r = 0."""
    plan = plan_blocks([0.8, 0.8, 0.8, 2.0, 0.5], 2.5, shuffle=False)
    np.testing.assert_array_equal(plan.sizes, [3, 2])
    targets, prior = _pair(5, seed=2)
    tb, pb = plan.split(targets, prior)
    coder = jaxrec.orc(256)
    encode = jax.jit(coder.encode)
    key = jax.random.key(9)
    for b, dims in enumerate([np.array([0, 1, 2]), np.array([3, 4])]):
        t = jax.tree.map(lambda a: a[0, dims], targets)
        p = jax.tree.map(lambda a: a[dims], prior)
        padded = encode(key, jax.tree.map(lambda a: a[0, b], tb), jax.tree.map(lambda a: a[b], pb))
        plain = encode(key, t, p)
        assert int(padded.index) == int(plain.index)
        z_padded = coder.decode(key, padded, jax.tree.map(lambda a: a[b], pb))
        np.testing.assert_array_equal(z_padded[: dims.size], coder.decode(key, plain, p))


def test_split_rejects_bad_inputs():
    plan = plan_blocks([1.0, 1.0, 3.0], 2.5, shuffle=False)
    targets, prior = _pair(3)
    with pytest.raises(InvalidArgumentError, match="event size"):
        plan.split(jax.tree.map(lambda a: a[:, :2], targets), prior)
    with pytest.raises(InvalidArgumentError, match="batch shape"):
        plan.split(targets, targets)
    unif = jaxrec.Uniform(-jnp.ones(3), jnp.ones(3))
    with pytest.raises(InvalidArgumentError, match="one type"):
        plan.split(unif, prior)
    with pytest.raises(InvalidArgumentError, match="shape"):
        plan.merge(jnp.zeros((3, 3)))


def test_with_partitions_stacks_per_block_pytrees():
    plan = plan_blocks([1.0, 1.0, 2.0, 0.5], 2.5, shuffle=False)
    seen = []

    def build(dims, size):
        seen.append(dims.tolist())
        counts = np.ones(size, np.int32)
        counts[: dims.size] = 2 + dims
        return Partition(counts, max_intervals=8)

    with_parts = plan.with_partitions(build)
    assert seen == [[0, 1], [2, 3]]
    np.testing.assert_array_equal(with_parts.partitions.num_intervals, [[2, 3], [4, 5]])
    assert with_parts.fingerprint != plan.fingerprint
    assert plan.with_partitions(build).fingerprint == with_parts.fingerprint
    with pytest.raises(InvalidArgumentError, match="one pytree structure"):
        plan.with_partitions(lambda dims, size: Partition(np.full(size, 2), max_intervals=2 + int(dims[0])))


def test_plan_and_fingerprint_are_pinned():
    """Golden values: the shuffle (threefry, pinned JAX range) and the fingerprint in every file
    header must not change silently -- a change here breaks every stored file and needs a new
    format version."""
    plan = plan_blocks(np.linspace(0.2, 3.0, 16), 5.0, key=0, max_block_size=5)
    np.testing.assert_array_equal(plan.order, [0, 1, 8, 12, 5, 6, 4, 13, 14, 3, 10, 2, 7, 15, 11, 9])
    np.testing.assert_array_equal(plan.sizes, [4, 3, 1, 2, 3, 1, 2])
    assert plan.fingerprint == 0xBA9C107A, hex(plan.fingerprint)
