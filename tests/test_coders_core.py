"""PFR, ORC and MRC: exactness, step counts, codelength, determinism, budgets and bad input.

Compiled encoders are module-level ``jax.jit`` objects so that every test reuses them.
"""

import dataclasses
import functools
import re
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxrec
from jaxrec import InvalidArgumentError, entropy
from jaxrec.coders import base
from jaxrec.coders.base import EXHAUSTED, UNBOUNDED_RATIO
from jaxrec.core import prng

N_SAMPLES = 5000
LN2 = np.log(2.0)

PFR = jaxrec.pfr(chunk_size=256)


@functools.partial(jax.jit, static_argnums=0)
def encode_many(coder, keys, target, prior):
    return jax.vmap(coder.encode, in_axes=(0, None, None))(keys, target, prior)


@functools.partial(jax.jit, static_argnums=0)
def decode_many(coder, keys, codes, prior):
    return jax.vmap(coder.decode, in_axes=(0, 0, None))(keys, codes, prior)


def _keys(seed, n=N_SAMPLES):
    return jax.random.split(prng.as_key(seed), n)


def _ks_per_dim(xs, target):
    xs = np.asarray(xs, np.float64)
    if isinstance(target, jaxrec.DiagGaussian):
        dists = [stats.norm(float(m), float(s)) for m, s in zip(target.loc, target.scale)]
    else:
        dists = [stats.uniform(float(lo), float(hi - lo)) for lo, hi in zip(target.low, target.high)]
    return [stats.kstest(xs[:, d], dist.cdf).pvalue for d, dist in enumerate(dists)]


rng = np.random.default_rng(0)
_sig16 = rng.uniform(0.75, 0.95, 16)
PAIRS = {
    "gauss-1d-narrow": (jaxrec.DiagGaussian(2.0, 0.05), jaxrec.DiagGaussian(0.0, 1.0)),
    "gauss-1d-offset-prior": (jaxrec.DiagGaussian(-0.3, 0.8), jaxrec.DiagGaussian(0.5, 1.5)),
    "gauss-16d": (
        jaxrec.DiagGaussian(rng.normal(size=16) * np.sqrt(1 - _sig16**2) * 0.5, _sig16),
        jaxrec.DiagGaussian(jnp.zeros(16), jnp.ones(16)),
    ),
    "uniform-in-uniform-3d": (jaxrec.Uniform([0.1, 0.5, 0.0], [0.3, 0.9, 0.6]), jaxrec.Uniform(jnp.zeros(3), jnp.ones(3))),
    "uniform-in-gauss-2d": (jaxrec.Uniform([0.5, -1.0], [1.0, 0.0]), jaxrec.DiagGaussian(jnp.zeros(2), jnp.ones(2))),
}


@pytest.fixture(scope="module", params=sorted(PAIRS))
def pfr_run(request):
    target, prior = PAIRS[request.param]
    # A fixed seed per pair: crc32, not hash(), which Python randomizes per process (PYTHONHASHSEED).
    keys = _keys(zlib.crc32(request.param.encode()))
    codes = encode_many(PFR, keys, target, prior)
    xs = decode_many(PFR, keys, codes, prior)
    return request.param, target, prior, keys, codes, xs


@pytest.mark.slow
def test_pfr_is_exact(pfr_run):
    name, target, _, _, codes, xs = pfr_run
    assert not bool(jnp.any(codes.exhausted))
    pvalues = _ks_per_dim(xs, target)
    assert min(pvalues) > 1e-3, (name, pvalues)


@pytest.mark.slow
def test_pfr_mean_steps_is_two_to_the_dinf(pfr_run):
    name, target, prior, _, codes, _ = pfr_run
    steps = np.asarray(codes.steps, np.float64)
    expected = 2.0 ** float(jaxrec.dinf(target, prior))
    stderr = steps.std() / np.sqrt(steps.size)
    assert abs(steps.mean() - expected) < 4 * stderr + 1.0, (name, steps.mean(), expected)


@pytest.mark.slow
def test_pfr_zipf_codelength_bound(pfr_run):
    name, target, prior, _, codes, _ = pfr_run
    kl_bits = float(jaxrec.kl(target, prior))
    alpha = entropy.zipf_exponent(kl_bits)
    mean_bits = float(jnp.mean(entropy.zipf_bits(codes.index, alpha)))
    assert mean_bits <= kl_bits + np.log2(kl_bits + 1) + 4, (name, mean_bits, kl_bits)
    assert float(np.mean(np.log2(np.asarray(codes.index) + 1.0))) <= kl_bits + 1 + 0.1


@pytest.mark.slow
def test_decode_returns_the_encoders_candidate_bit_for_bit(pfr_run):
    _, target, prior, keys, codes, xs = pfr_run
    encoder_candidates = jax.jit(prng.candidates)  # the encoder generates candidates compiled, too
    for i in range(5):
        chosen = encoder_candidates(keys[i], codes.index[i][None], prior)[0]
        np.testing.assert_array_equal(np.asarray(xs[i]), np.asarray(chosen))
        np.testing.assert_array_equal(np.asarray(PFR.decode(keys[i], jax.tree.map(lambda a: a[i], codes), prior)), np.asarray(chosen))
    # the decoded point beats every earlier candidate's PFR score, recomputed from scratch
    i = int(jnp.argmax(codes.index))
    ns = jnp.arange(int(codes.index[i]) + 1, dtype=jnp.int32)
    from jaxrec.core import arrivals

    log_t, _ = arrivals.log_arrival_times(arrivals.zero_time(), arrivals.exponential_increments(keys[i], ns))
    scores = jaxrec.log_ratio(target, prior, prng.candidates(keys[i], ns, prior)) - log_t
    assert int(jnp.argmax(scores)) == int(codes.index[i])


SMALL_TARGET, SMALL_PRIOR = PAIRS["gauss-16d"]


@pytest.mark.slow  # 19 s in the fast tier (2 idle cores)
def test_codes_do_not_depend_on_chunk_size_jit_or_vmap():
    keys = _keys(99, 200)
    reference = encode_many(PFR, keys, SMALL_TARGET, SMALL_PRIOR)
    for chunk in (1, 64, 1024):
        other = encode_many(jaxrec.pfr(chunk_size=chunk), keys, SMALL_TARGET, SMALL_PRIOR)
        np.testing.assert_array_equal(other.index, reference.index)
        np.testing.assert_array_equal(other.steps, reference.steps)
    again = encode_many(PFR, keys, SMALL_TARGET, SMALL_PRIOR)
    np.testing.assert_array_equal(again.index, reference.index)
    for i in range(3):
        eager = PFR.encode(keys[i], SMALL_TARGET, SMALL_PRIOR)
        assert int(eager.index) == int(reference.index[i]) and int(eager.steps) == int(reference.steps[i])


@pytest.mark.slow
def test_encode_batch_equals_vmap_and_accepts_batched_targets():
    b = 300
    sig = jnp.asarray(rng.uniform(0.3, 0.9, (b, 5)), jnp.float32)
    mu = jnp.asarray(rng.normal(size=(b, 5)), jnp.float32) * jnp.sqrt(1 - sig**2) * 0.5
    targets = jaxrec.DiagGaussian(mu, sig)
    prior = jaxrec.DiagGaussian(jnp.zeros(5), jnp.ones(5))
    keys = _keys(5, b)
    vmapped = jax.jit(jax.vmap(PFR.encode, in_axes=(0, 0, None)))(keys, targets, prior)
    for lanes, chunk in [(7, 32), (64, 256)]:
        queued = jax.jit(lambda k, q, p: jaxrec.encode_batch(PFR, k, q, p, num_lanes=lanes, lane_chunk_size=chunk))(
            keys, targets, prior
        )
        for field in ("index", "steps", "status"):
            np.testing.assert_array_equal(getattr(queued, field), getattr(vmapped, field))


@pytest.mark.slow
def test_encode_batch_tail_widening_changes_speed_not_codes():
    """Problems with very different D_inf leave a long tail of a few slow problems; search_batch
    then packs them into wider lanes (up to 8x).  Codes must equal vmap(encode) and the
    no-widening schedule exactly, and bad schedules are refused."""
    b = 96
    sig = jnp.asarray(np.exp(rng.uniform(np.log(0.05), np.log(0.9), (b, 2))), jnp.float32)  # D_inf 0.3..8.6 bits
    targets = jaxrec.DiagGaussian(jnp.zeros((b, 2)) + 0.1 * sig, sig)
    prior = jaxrec.DiagGaussian(jnp.zeros(2), jnp.ones(2))
    keys = _keys(17, b)
    vmapped = jax.jit(jax.vmap(PFR.encode, in_axes=(0, 0, None)))(keys, targets, prior)
    assert int(jnp.max(vmapped.steps)) > 8 * float(jnp.mean(vmapped.steps))  # a real tail
    for widening in (0, 3):
        queued = jax.jit(
            lambda k, q, w=widening: jaxrec.encode_batch(PFR, k, q, prior, num_lanes=16, lane_chunk_size=16, max_widening=w)
        )(keys, targets)
        for field in ("index", "steps", "status"):
            np.testing.assert_array_equal(getattr(queued, field), getattr(vmapped, field))
    with pytest.raises(InvalidArgumentError, match="max_widening"):
        jaxrec.encode_batch(PFR, keys, targets, prior, max_widening=-1)


def test_exhausted_flag_and_unbounded_ratio():
    target, prior = jaxrec.DiagGaussian(3.0, 0.01), jaxrec.DiagGaussian(0.0, 1.0)  # D_inf ~ 13 bits
    with pytest.warns(RuntimeWarning, match="exceeds the limit of 100 steps"):
        code = jaxrec.pfr(chunk_size=64, max_steps=100).encode(1, target, prior)
    assert int(code.status) == EXHAUSTED and bool(code.exhausted) and int(code.steps) == 100
    wide = jaxrec.DiagGaussian(0.0, 1.5)
    with pytest.raises(InvalidArgumentError, match="D_inf"):
        PFR.encode(0, wide, prior)
    # under jit the unbounded ratio cannot raise: the search stops at once and says why
    traced = jax.jit(jaxrec.pfr(chunk_size=64, max_steps=500).encode)(0, wide, prior)
    assert int(traced.status) == UNBOUNDED_RATIO and int(traced.steps) == 0 and not bool(traced.exhausted)


@pytest.mark.slow
def test_pfr_float64_path_is_exact():
    with jax.enable_x64(True):
        target = jaxrec.DiagGaussian(jnp.array([1.0], jnp.float64), jnp.array([0.1], jnp.float64))
        prior = jaxrec.DiagGaussian(jnp.zeros(1, jnp.float64), jnp.ones(1, jnp.float64))
        keys = _keys(64)
        coder = jaxrec.pfr(chunk_size=128)
        codes = jax.jit(jax.vmap(coder.encode, in_axes=(0, None, None)))(keys, target, prior)
        xs = jax.jit(jax.vmap(coder.decode, in_axes=(0, 0, None)))(keys, codes, prior)
        assert xs.dtype == jnp.float64
        assert stats.kstest(np.asarray(xs[:, 0]), stats.norm(1.0, 0.1).cdf).pvalue > 1e-3


def _ks_distance(coder, target, prior, seed):
    keys = _keys(seed, 3000)
    xs = decode_many(coder, keys, encode_many(coder, keys, target, prior), prior)
    return stats.kstest(np.asarray(xs[:, 0]), stats.norm(float(target.loc[0]), float(target.scale[0])).cdf).statistic


@pytest.mark.slow
@pytest.mark.parametrize("factory", [jaxrec.orc, jaxrec.mrc])
def test_fixed_budget_coders_approach_the_target(factory):
    target, prior = PAIRS["gauss-1d-narrow"]  # KL = 6.5 bits
    distances = [_ks_distance(factory(n), target, prior, seed=n) for n in (4, 32, 512, 8192)]
    # the distance falls until it reaches the KS noise of 3000 samples (1% critical value 1.63/sqrt(3000))
    noise = 1.63 / np.sqrt(3000)
    assert all(a > b or max(a, b) < noise for a, b in zip(distances, distances[1:])), distances
    assert distances[0] > 0.3 and distances[-1] < 0.05, distances


@pytest.mark.slow  # 7 s cold in the fast tier (2 idle cores)
@pytest.mark.mutation
def test_orc_indices_are_in_range_and_match_pfr_when_the_budget_suffices():
    target, prior = PAIRS["gauss-1d-offset-prior"]
    keys = _keys(21, 500)
    orc_codes = encode_many(jaxrec.orc(16), keys, target, prior)
    assert int(orc_codes.index.max()) < 16 and not bool(orc_codes.exhausted.any())
    big = encode_many(jaxrec.orc(4096), keys, target, prior)
    pfr_codes = encode_many(PFR, keys, target, prior)
    np.testing.assert_array_equal(big.index, pfr_codes.index)
    mrc_codes = encode_many(jaxrec.mrc(16), keys, target, prior)
    assert int(mrc_codes.index.max()) < 16 and int(mrc_codes.index.min()) >= 0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: jaxrec.pfr(chunk_size=0), "chunk_size"),
        (lambda: jaxrec.pfr(chunk_size=2**16), "chunk_size"),
        (lambda: jaxrec.pfr(max_steps=2**31), "max_steps"),
        (lambda: jaxrec.orc(0), "num_samples"),
        (lambda: jaxrec.mrc(2.5), "num_samples"),
        (lambda: PFR.encode(0, jaxrec.DiagGaussian(jnp.zeros(2), 0.5), jaxrec.DiagGaussian(jnp.zeros(3), 1.0)), "event sizes"),
        (lambda: PFR.encode(0, "not a distribution", jaxrec.DiagGaussian(0.0, 1.0)), "target"),
        (lambda: PFR.decode(2**33, jaxrec.Code(0, 0, 0, coder="pfr", event_size=1), jaxrec.DiagGaussian(0.0, 1.0)), "seed"),
    ],
)
def test_bad_input_raises_clear_errors(call, match):
    with pytest.raises(InvalidArgumentError, match=match):
        call()


def test_pfr_defaults_and_argument_names_in_errors():
    """The documented defaults (they go into file headers), and errors that start with the name of
    the argument at fault."""
    assert jaxrec.pfr().spec.kwargs == {"chunk_size": 1024, "max_steps": 2**26}
    assert jaxrec.orc(2**20).spec.kwargs == {"num_samples": 2**20, "chunk_size": 1024}
    assert jaxrec.mrc(100).spec.kwargs == {"num_samples": 100, "chunk_size": 100}
    for call, name in [(lambda: jaxrec.pfr(max_steps=0), "max_steps"), (lambda: jaxrec.orc(0), "num_samples"),
                       (lambda: jaxrec.mrc(-3), "num_samples"), (lambda: jaxrec.pfr(chunk_size=0), "chunk_size")]:  # fmt: skip
        with pytest.raises(InvalidArgumentError, match=rf"^{name} must be an int in \[1, "):
            call()


@pytest.mark.parametrize("coder", [jaxrec.pfr(chunk_size=16), jaxrec.mrc(16)], ids=["pfr", "mrc"])
def test_float32_codes_do_not_depend_on_the_x64_flag(coder):
    """A float32 problem is computed in float32 whether or not x64 is enabled (the search state takes
    the prior's dtype, not the default float), so the codes are the same (ORC shares PFR's scan)."""
    target, prior = PAIRS["gauss-1d-offset-prior"]
    keys = _keys(5, 16)
    encode = lambda: jax.jit(jax.vmap(coder.encode, in_axes=(0, None, None)))(keys, target, prior)
    plain = encode()
    with jax.enable_x64(True):
        wide = encode()
    for field in ("index", "steps", "status"):
        np.testing.assert_array_equal(getattr(wide, field), getattr(plain, field))


def test_encode_batch_widens_lanes_by_default_only_when_the_batch_outgrows_them(monkeypatch):
    """``max_widening`` defaults to ``search.MAX_WIDENING`` for a batch with more problems than
    lanes and to 0 for one that fits in them (each level compiles another copy of the chunk step);
    an explicit value is kept."""
    from jaxrec import search

    class Traced(Exception):
        pass

    seen = []

    def spy(*args, **kwargs):  # records the schedule while the batch encoder is traced, compiles nothing
        seen.append(kwargs["max_widening"])
        raise Traced

    monkeypatch.setattr(search, "search_batch", spy)
    coder = jaxrec.pfr(chunk_size=8, max_steps=63)  # a configuration of its own: nothing cached is reused
    targets = jaxrec.DiagGaussian(jnp.full((5, 2), 0.2), jnp.full((5, 2), 0.9))
    prior = jaxrec.DiagGaussian(jnp.zeros(2), jnp.ones(2))
    for lanes, widening, want in ((5, None, 0), (4, None, search.MAX_WIDENING), (5, 2, 2)):
        options = {} if widening is None else {"max_widening": widening}
        with pytest.raises(Traced):
            jaxrec.encode_batch(coder, jnp.arange(5), targets, prior, num_lanes=lanes, lane_chunk_size=8, **options)
        assert seen[-1] == want, (lanes, widening)


def test_scan_coders_default_schedule_single_problem_check_and_hopeless_search_warning(monkeypatch):
    """A scan coder's batch schedule defaults to lanes of ``min(chunk_size, 128)`` candidates, ``2^13``
    candidates in flight, a shared prior broadcast to ``(B, D)``; ``encode`` refuses a batch on either
    side; an eager exact ``encode`` warns (from the caller's line) when ``D_inf > log2(max_steps) + 1``
    and not at or below it, a fixed-budget coder never.  The searches are replaced by spies, so nothing
    compiles (coders/scan mutation survivors)."""
    import math
    import warnings

    from jaxrec import search

    class Traced(Exception):
        pass

    seen = []

    def spy(*args, **kwargs):
        seen.append((args, kwargs))
        raise Traced

    monkeypatch.setattr(search, "search_batch", spy)
    monkeypatch.setattr(search, "search", spy)
    targets = jaxrec.DiagGaussian(jnp.full((5, 2), 0.2), jnp.full((5, 2), 0.9))
    prior = jaxrec.DiagGaussian(jnp.array([0.0, 0.5]), jnp.array([1.0, 2.0]))
    batched = jaxrec.DiagGaussian(jnp.zeros((5, 2)), jnp.ones((5, 2)))
    for chunk, lane_chunk, lanes, shared in ((256, 128, 64, prior), (32, 32, 256, batched)):
        with pytest.raises(Traced):
            jaxrec.encode_batch(jaxrec.pfr(chunk_size=chunk, max_steps=2**12 + 1), jnp.arange(5), targets, shared)
        args, kwargs = seen[-1]
        assert (kwargs["chunk_size"], kwargs["num_lanes"]) == (lane_chunk, lanes), chunk
        assert args[1][2].loc.shape == (5, 2) and args[1][2].scale.shape == (5, 2)  # the prior, once per problem
    coder = jaxrec.pfr(chunk_size=8, max_steps=2**12 + 1)
    for options, lanes in (({"lane_chunk_size": 2**13}, 1), ({"lane_chunk_size": 2**12}, 2), ({"num_lanes": 2**20}, 2**20)):
        with pytest.raises(Traced):
            jaxrec.encode_batch(coder, jnp.arange(5), targets, prior, **options)
        assert seen[-1][1]["num_lanes"] == lanes, options
    for options, message in (({"lane_chunk_size": 0}, "^lane_chunk_size must be"), ({"num_lanes": 2**20 + 1}, "^num_lanes must be"),
                             ({"max_widening": -1}, "^max_widening must be"), ({"lanes": 4}, "^unknown encode_batch options \\['lanes'\\]")):
        with pytest.raises(InvalidArgumentError, match=message):
            jaxrec.encode_batch(coder, jnp.arange(5), targets, prior, **options)
    # the batch's codes are checked for their status: a search that ran out of steps warns (the spy's results)
    fake = lambda *args, **kwargs: search.SearchResult(jnp.zeros(5, jnp.int32), jnp.zeros(5), None, jnp.full(5, 4097, jnp.int32),
                                                        jnp.zeros(5, bool))
    monkeypatch.setattr(search, "search_batch", fake)
    with pytest.warns(RuntimeWarning, match="exhausted"):
        codes = jaxrec.encode_batch(coder, jnp.arange(5), targets, prior)
    assert np.asarray(codes.status).tolist() == [EXHAUSTED] * 5
    # a coder without a batch encoder: vmap(encode) over keys, targets and a shared or batched prior, its status checked
    def encode(key, target, prior):
        assert target.loc.shape == prior.loc.shape == (2,) and key.shape == ()
        return jaxrec.Code(jnp.int32(0), jnp.int32(1), jnp.int32(EXHAUSTED), coder="pfr", event_size=2)

    plain = jaxrec.Coder(encode, coder.decode, coder.spec)
    for shared in (prior, batched):
        with pytest.warns(RuntimeWarning, match="exhausted"):
            codes = jaxrec.encode_batch(plain, jnp.arange(5), targets, shared)
        assert np.asarray(codes.steps).tolist() == [1] * 5
    with pytest.raises(InvalidArgumentError, match="no batch encoder"):
        jaxrec.encode_batch(plain, jnp.arange(5), targets, prior, num_lanes=2)
    for target, batch_prior in ((targets, prior), (jaxrec.DiagGaussian(jnp.zeros(2), jnp.ones(2)), batched)):
        with pytest.raises(InvalidArgumentError, match="^encode codes one problem"):
            coder.encode(0, target, batch_prior)
    target = jaxrec.DiagGaussian(jnp.array([1.5, -1.0]), jnp.array([0.3, 0.6]))
    d = float(jaxrec.dinf(target, prior))
    assert 0.05 < d - math.floor(d) < 0.95, d  # away from the thresholds below
    for log2_steps, warns in ((math.ceil(d - 1) - 1, True), (math.ceil(d - 1), False)):
        for coder in (jaxrec.pfr(chunk_size=8, max_steps=2**log2_steps), jaxrec.orc(2**log2_steps, chunk_size=8)):
            with warnings.catch_warnings(record=True) as caught, pytest.raises(Traced):
                warnings.simplefilter("always")
                coder.encode(0, target, prior)
            hopeless = [w for w in caught if "expected number of steps" in str(w.message)]
            assert len(hopeless) == (warns and coder.spec.name == "pfr"), (log2_steps, coder.spec.name)
            for w in hopeless:
                assert w.filename == __file__ and w.category is RuntimeWarning
                assert f"2^{d:.1f}, exceeds the limit of {2**log2_steps} steps: the search will stop at the limit with " \
                    "status 'exhausted' (use smaller blocks, a larger limit, or a space-partitioning coder)" in str(w.message)


def test_status_values_names_warning_and_code_dataclasses():
    """The documented status values (0-3, distinct) and their names; ``warn_status`` counts each bad
    status by name with its hint; a code is a frozen dataclass whose ``message``, ``ok`` and
    ``exhausted`` are properties and whose static fields are keyword-only (coders/base mutation
    survivors: a status equal to another, a renamed status, ``frozen=False``, ``kw_only=False``, a
    lost ``@property``)."""
    assert (base.OK, base.EXHAUSTED, base.INVALID_INPUT, base.UNBOUNDED_RATIO) == (0, 1, 2, 3)
    assert base.STATUS_NAMES == ("ok", "exhausted", "invalid_input", "unbounded_ratio")
    status = jnp.int32([0, 2, 1, 3, 2])
    code = base.Code(index=jnp.arange(5, dtype=jnp.int32), steps=jnp.ones(5, jnp.int32), status=status,
                     coder="pfr", event_size=1)
    expected = (r"{'exhausted': 1, 'invalid_input': 2, 'unbounded_ratio': 1} of 5 code(s) are not ok "
                r"(exhausted: the samples are the best candidates found, not exact samples (raise the step limit or use "
                r"smaller blocks); invalid_input: a target or prior parameter was NaN/inf, a scale was not positive, or "
                r"the target has mass outside the prior's support; unbounded_ratio: D_inf[Q||P] is infinite (a target at "
                r"least as wide as the prior))")
    with pytest.warns(RuntimeWarning, match=f"^{re.escape(expected)}$"):
        base.warn_status(code)
    assert list(code.message) == ["index"] and code.message["index"] is code.index
    np.testing.assert_array_equal(code.ok, [True, False, False, False, False])
    np.testing.assert_array_equal(code.exhausted, [False, False, True, False, False])
    with pytest.raises(dataclasses.FrozenInstanceError):
        code.index = jnp.int32(7)
    with pytest.raises(TypeError, match="positional"):
        base.Code(code.index, code.steps, code.status, "pfr", 1)


def test_coder_factories_cache_by_typed_arguments_in_a_bounded_cache():
    """A factory returns one coder per configuration, keyed with the arguments' types (a refused
    ``64.0`` or ``True`` is never answered with the coder of ``64`` or ``1``), from a cache of the last
    128 configurations that ``cache_info()`` reports; the wrapper keeps the factory's name and
    docstring (coders/base mutation survivors: ``typed=False``, an unbounded cache, a lost
    ``functools.wraps`` or ``cache_info``)."""
    assert jaxrec.orc(64) is jaxrec.orc(64)
    with pytest.raises(InvalidArgumentError, match="num_samples"):
        jaxrec.orc(64.0)
    assert jaxrec.pfr(chunk_size=1) is jaxrec.pfr(chunk_size=1)
    with pytest.raises(InvalidArgumentError, match="chunk_size"):
        jaxrec.pfr(chunk_size=True)
    info = jaxrec.pfr.cache_info()
    assert base.FACTORY_CACHE_SIZE == info.maxsize == 128 and info.currsize >= 1
    kept = jaxrec.pfr(chunk_size=1)
    jaxrec.pfr.cache_clear()  # what tools/mutation.py calls between mutants
    assert jaxrec.pfr.cache_info().currsize == 0 and jaxrec.pfr(chunk_size=1) is not kept
    assert jaxrec.pfr.__name__ == "pfr" and jaxrec.pfr.__doc__.startswith("Exact PFR coder.")


def test_check_pair_names_where_the_target_leaves_the_priors_support():
    """``check_pair``'s whole message for a Gaussian target against a uniform prior (refused from the
    types) and for a uniform box that leaves the prior's box on one axis (the first offending
    (batch..., dim) index; coders/base mutation survivors: ``per_dim=False``, the message's parts)."""
    tail = ("; no coder can encode it: use a prior whose support covers the target's (e.g. a DiagGaussian prior)")
    box = jaxrec.Uniform(jnp.zeros(2), jnp.ones(2))
    gaussian = ("the target has mass outside the prior's support (D_KL[Q||P] = inf: a DiagGaussian target against a "
                "Uniform prior)" + tail)
    with pytest.raises(InvalidArgumentError, match=f"^{re.escape(gaussian)}$"):
        base.check_pair(jaxrec.DiagGaussian(jnp.zeros(2), jnp.ones(2)), box)
    for lo, hi, where in (([0.2, 0.5], [0.4, 1.5], "(1,)"), ([[0.2, 0.1], [0.2, 0.5]], [[0.4, 0.9], [0.4, 1.5]], "(1, 1)")):
        uniform = (f"the target has mass outside the prior's support at index {where} (D_KL[Q||P] = inf: a Uniform "
                   "target against a Uniform prior, the target box not inside the prior box)" + tail)
        with pytest.raises(InvalidArgumentError, match=f"^{re.escape(uniform)}$"):
            base.check_pair(jaxrec.Uniform(jnp.array(lo), jnp.array(hi)), box)
    base.check_pair(jaxrec.Uniform(jnp.array([0.2, 0.5]), jnp.array([0.4, 1.0])), box)  # a shared end is inside
    half = jaxrec.DiagGaussian(jnp.zeros(2, jnp.float16), jnp.ones(2, jnp.float16))
    full = jaxrec.DiagGaussian(jnp.zeros(2), jnp.ones(2))
    for target, prior, name in ((half, full, "target"), (full, half, "prior")):
        with pytest.raises(InvalidArgumentError, match=f"^{name} parameters must be float32 or float64, got float16$"):
            base.check_pair(target, prior)


def test_check_code_messages_name_the_type_the_maker_and_the_batch():
    """``check_code``'s whole messages for a non-code, a code of another coder, a batch of codes, a
    batched prior and a prior that is no distribution (coders/base mutation survivors: the
    messages' parts)."""
    prior = jaxrec.DiagGaussian(jnp.zeros(3), jnp.ones(3))
    made_by_orc = base.Code(index=jnp.int32(1), steps=jnp.int32(2), status=jnp.int32(0), coder="orc", event_size=3)
    batch = base.Code(index=jnp.int32([1, 2]), steps=jnp.int32([2, 2]), status=jnp.int32([0, 0]), coder="pfr",
                      event_size=3)
    one = base.Code(index=jnp.int32(1), steps=jnp.int32(2), status=jnp.int32(0), coder="pfr", event_size=3)
    priors = jaxrec.DiagGaussian(jnp.zeros((2, 3)), jnp.ones((2, 3)))
    for code, decode_prior, message in (
        ((1, 2), prior, "code must be a Code made by pfr, got tuple"),
        (made_by_orc, prior, ("this code was made by 'orc'; the 'pfr' decoder cannot decode it (decode with the "
                              "coder that encoded it)")),
        (batch, prior, ("decode takes one code, got a code whose status has shape (2,) (expected ()); use "
                        "jax.vmap(coder.decode) for a batch of codes")),
        (one, priors, ("decode takes one code and a prior without batch axes, got a prior of batch shape (2,); "
                       "use jax.vmap(coder.decode) for a batch")),
        (one, (0.0, 1.0), "prior must be a jaxrec distribution, got tuple"),
    ):
        with pytest.raises(InvalidArgumentError, match=f"^{re.escape(message)}$"):
            base.check_code(code, base.Code, "pfr", decode_prior)


def test_compiled_encoder_warns_from_the_callers_line_when_a_code_is_not_ok():
    """An encoder from ``compiled_encoder`` runs its checks, then warns once about a code whose
    status is not ``OK``, attributed to the line that called ``encode`` (coders/base mutation
    survivors: the warning dropped, ``stacklevel`` 4)."""
    checked = []

    def search(key, target, prior):
        return base.Code(index=jnp.int32(0), steps=jnp.int32(1), status=jnp.int32(EXHAUSTED), coder="pfr",
                         event_size=prior.event_size)

    encode = base.compiled_encoder(search, lambda target, prior: checked.append(prior.event_size))
    prior = jaxrec.DiagGaussian(jnp.zeros(2), jnp.ones(2))
    with pytest.warns(RuntimeWarning, match=r"^\{'exhausted': 1\} of 1 code\(s\) are not ok") as record:
        code = encode(0, prior, prior)
    assert int(code.status) == EXHAUSTED and checked == [2]
    assert len(record) == 1 and record[0].filename == __file__


def test_check_bounded_ratio_names_the_coordinate_that_is_too_wide():
    """The unbounded-ratio error names the first offending (batch..., dim) index, also for a joint
    coder's single problem (it said ``(0,)`` for any unbatched target before: coders/base mutant 129,
    ``per_dim`` defaulting to ``True``, was a fix)."""
    prior = jaxrec.DiagGaussian(jnp.zeros(3), jnp.ones(3))
    message = ("this coder needs a bounded density ratio (D_inf[Q||P] < inf), but it is unbounded at index {} (a target "
               "at least as wide as the prior); use a wider prior or a fixed-budget coder (orc/mrc)")
    wide = jaxrec.DiagGaussian(jnp.zeros(3), jnp.array([0.5, 2.0, 0.5]))
    batch = jaxrec.DiagGaussian(jnp.zeros((2, 3)), jnp.array([[0.5, 0.5, 0.5], [0.5, 0.5, 1.5]]))
    for target, where in ((wide, "(1,)"), (batch, "(1, 2)")):
        with pytest.raises(InvalidArgumentError, match=f"^{re.escape(message.format(where))}$"):
            base.check_bounded_ratio(target, prior)
    with pytest.raises(InvalidArgumentError, match=re.escape("unbounded at index (1,)")):
        jaxrec.pfr().encode(0, wide, prior)
    base.check_bounded_ratio(jaxrec.DiagGaussian(jnp.zeros(3), jnp.full(3, 0.9)), prior)
