"""Tests for A* coding: AS*, AD* (exact) and DAD* (depth-limited, approximate)."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tree_reference
from sampler_helpers import compiled, gaussian_pair
from scipy import stats

import jaxrec
from jaxrec.coders.base import UNBOUNDED_RATIO
from jaxrec.coders.registry import REGISTRY
from jaxrec.coders.tree import _astar as astar_mod
from jaxrec.coders.tree import partition_tree as tree
from jaxrec.coders.tree import paths as ts
from jaxrec.core.errors import InvalidArgumentError

N = 5000
# (target loc, target scale, prior loc, prior scale): bounded ratios, D_inf from 0.6 to 12 bits.
KS_PAIRS = [(1.0, 0.25, 0.0, 1.0), (3.0, 0.3, 1.0, 2.0), (-1.3, 0.002, -1.0, 0.5)]
CODERS = {"astar": jaxrec.astar(), "adstar": jaxrec.adstar()}
SPLITS = {"astar": tree.SAMPLE_SPLIT, "adstar": tree.DYADIC_SPLIT, "dadstar": tree.DYADIC_SPLIT}
DAD_DEPTHS = (2, 5)
DAD_CODERS = {d: jaxrec.dadstar(d) for d in DAD_DEPTHS}


_VMAPPED = {}


def _vmapped(coder):
    """Jitted ``vmap(encode)``, ``vmap(decode)`` over keys, targets and priors, built once per function
    (coders of one split share their decode function, so AD* and DAD* share compilations)."""
    for fn in (coder.encode, coder.decode):
        if fn not in _VMAPPED:
            _VMAPPED[fn] = jax.jit(jax.vmap(fn))
    return _VMAPPED[coder.encode], _VMAPPED[coder.decode]


SINGLE_ASTAR = jax.jit(CODERS["astar"].encode)


def _problems(pairs, n, seed):
    """Keys, targets and priors for ``n`` draws of each pair, batched ``(len(pairs) * n,)``."""
    rows = np.repeat(np.asarray(pairs, dtype=np.float32), n, axis=0)
    keys = jax.random.split(jax.random.key(seed), rows.shape[0])
    target = jaxrec.DiagGaussian(rows[:, 0:1], rows[:, 1:2])
    prior = jaxrec.DiagGaussian(rows[:, 2:3], rows[:, 3:4])
    return keys, target, prior


@pytest.fixture(scope="module")
def ks_runs():
    """Both exact coders on the KS problems: ``{name: (problems, codes, decoded xs)}``."""
    problems = _problems(KS_PAIRS, N, seed=1)
    runs = {}
    for name, coder in CODERS.items():
        enc, dec = _vmapped(coder)
        codes = enc(*problems)
        runs[name] = (problems, codes, np.asarray(dec(problems[0], codes, problems[2])[:, 0]))
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CODERS))
def test_exact_ks(ks_runs, name):
    _, codes, xs = ks_runs[name]
    assert not np.asarray(codes.exhausted).any()
    for i, (mu, s, _, _) in enumerate(KS_PAIRS):
        sample = xs[i * N : (i + 1) * N]
        assert stats.kstest(sample, stats.norm(mu, s).cdf).pvalue > 1e-3, (i, mu, s)


def _reference_node(key, target, prior, split, max_depth):
    """Exact argmax of ``ln r(X) - ln T`` over the tree, by depth-first search with pruning.

    Independent of the coder's priority queue; uses its node generator (jitted, as in the coder).
    """
    ratio = tree.gaussian_ratio(target, prior)
    words = ts.path_words(max_depth)
    root, score, bound = _ROOT(key, ratio, words, prior.dtype, split)
    best_score, best = float(score), root
    stack = [(float(bound), root)]
    while stack:
        b, node = stack.pop()
        if b <= best_score or int(node.depth) >= max_depth:
            continue
        kids, scores, bounds = _CHILDREN(key, ratio, node, split)
        for i in range(2):
            kid = jax.tree.map(lambda a: a[i], kids)
            if float(scores[i]) > best_score:
                best_score, best = float(scores[i]), kid
            stack.append((float(bounds[i]), kid))
    return best, _NODE_SAMPLE(best, prior, split)


@jax.jit
def _affine(prior, z):
    return prior.loc + prior.scale * z


def _NODE_SAMPLE(node, prior, split):
    if int(node.depth) == 0:
        z = _ROOT_SAMPLE(node.u, split)[0]
    else:
        z = _SAMPLE(node.lo, node.hi, node.u, split)[0]
    return _affine(prior, z)


_ROOT = jax.jit(tree.root_node, static_argnums=(2, 3, 4))
_CHILDREN = jax.jit(tree.child_nodes, static_argnums=3)
_ROOT_SAMPLE = jax.jit(tree.root_sample_and_cut, static_argnums=1)
_SAMPLE = jax.jit(tree.sample_and_cut, static_argnums=3)


def _lane(problems, i):
    keys, target, prior = problems
    return keys[i], jax.tree.map(lambda a: a[i], target), jax.tree.map(lambda a: a[i], prior)


@pytest.mark.slow
def test_astar_search_matches_reference_and_decodes_the_chosen_node(ks_runs):
    # (the dyadic search is checked against the reference through DAD*)
    name = "astar"
    problems, codes, xs = ks_runs[name]
    for i in [0, 1, 2, N, N + 1, 2 * N, 2 * N + 1, 2 * N + 2]:
        key, target, prior = _lane(problems, i)
        node, x = _reference_node(key, target, prior, SPLITS[name], astar_mod.DEFAULT_MAX_DEPTH)
        assert ts.heap_index(codes.depth[i], codes.path[i]) == ts.heap_index(node.depth, node.path)
        # decode(encode) is the chosen node's sample: bit for bit in one batch layout, within a few
        # ulps across layouts (XLA CPU rounds transcendentals differently for different array sizes).
        np.testing.assert_allclose(float(x[0]), xs[i], rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CODERS))
def test_determinism_and_vmap_invariance(ks_runs, name):
    problems, codes, _ = ks_runs[name]
    enc, _ = _vmapped(CODERS[name])
    again = enc(*problems)  # the same compiled search, run again
    for field in ("depth", "path", "steps", "exhausted"):
        np.testing.assert_array_equal(getattr(again, field), getattr(codes, field))
    if name != "astar":
        return  # one un-vmapped compilation is enough
    for i in [5, N + 5, 2 * N + 5]:
        single = SINGLE_ASTAR(*_lane(problems, i))
        assert ts.heap_index(single.depth, single.path) == ts.heap_index(codes.depth[i], codes.path[i])
        assert int(single.steps) == int(codes.steps[i])


# (target loc, target scale) against N(0, 1): D_inf from 1 to 35 bits.
STEP_PAIRS = [(0.0, 0.5, 0.0, 1.0), (1.0, 0.25, 0.0, 1.0), (2.0, 0.05, 0.0, 1.0), (3.0, 0.01, 0.0, 1.0),
              (4.0, 1e-3, 0.0, 1.0), (5.0, 1e-5, 0.0, 1.0)]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CODERS))
def test_expected_steps_linear_in_dinf(name):
    enc, _ = _vmapped(CODERS[name])
    n = N // 2  # same batch size as the KS run: no recompilation
    keys, target, prior = _problems(STEP_PAIRS, n, seed=2)
    codes = enc(keys, target, prior)
    assert not np.asarray(codes.exhausted).any()
    steps = np.asarray(codes.steps).reshape(len(STEP_PAIRS), n).mean(axis=1)
    depth = np.asarray(codes.depth).reshape(len(STEP_PAIRS), n).mean(axis=1)
    dinf = np.array([float(jaxrec.dinf(jaxrec.DiagGaussian(m, s), jaxrec.DiagGaussian(pm, ps)))
                     for m, s, pm, ps in STEP_PAIRS])
    kl = np.array([float(jaxrec.kl(jaxrec.DiagGaussian(m, s), jaxrec.DiagGaussian(pm, ps)))
                   for m, s, pm, ps in STEP_PAIRS])
    # O(D_inf): measured about 2 D_inf + 2 node samples; PFR would need 2^D_inf (2.6e10 at the end).
    assert np.all(steps <= 3.0 * dinf + 8.0), (steps, dinf)
    assert steps[-1] / dinf[-1] < 2.5
    assert np.all(np.diff(steps) > 0)  # and it does grow with D_inf
    # O(D_KL) codelength: the heap index has about depth + 1 bits.
    assert np.all(depth <= 1.1 * kl + 2.0), (depth, kl)
    assert depth[-1] > 31  # paths past one uint32 word are exercised
    # An exact search also runs on any lane whose ratio turned out unbounded under jit: flagged.


@pytest.mark.slow  # 7 s cold in the fast tier; test_invalid_arguments keeps a jitted status check
def test_unbounded_ratio_under_jit_is_flagged():
    code = SINGLE_ASTAR(jax.random.key(0), jaxrec.DiagGaussian(0.5, 2.0), jaxrec.DiagGaussian(0.0, 1.0))
    assert int(code.status) == UNBOUNDED_RATIO and int(code.steps) == 0


@pytest.mark.parametrize(
    "coder",
    # AS* never queues more than one node on these problems (the child without the mode is bounded
    # by its parent's score), so the queue overflow is provoked with AD*.
    [  # one compiled coder each (4-7 s cold): capacity in the fast tier
        jaxrec.adstar(capacity=1),
        pytest.param(jaxrec.astar(max_steps=5), marks=[pytest.mark.slow, pytest.mark.mutation]),  # 5 s cold
        pytest.param(jaxrec.adstar(max_depth=3), marks=pytest.mark.slow),
    ],
    ids=["capacity", "max_steps", "max_depth"],
)
def test_limits_set_exhausted(coder):
    enc = jax.jit(coder.encode)
    prior = jaxrec.DiagGaussian(0.0, 1.0)
    hard = jaxrec.DiagGaussian(0.0, 1e-4)  # D_inf = 13.3 bits: ~30 node samples, depth ~10, 2-3 queued
    easy = jaxrec.DiagGaussian(0.0, 0.9)  # D_inf = 0.15 bits: the search ends within 3-5 steps
    hard_codes = [enc(seed, hard, prior) for seed in range(8)]
    easy_codes = [enc(seed, easy, prior) for seed in range(8)]
    assert all(bool(code.exhausted) for code in hard_codes)  # every seed hits the limit ...
    assert not any(bool(code.exhausted) for code in easy_codes)  # ... and none on the easy problem
    limits = dict(coder.spec.params)  # the limit that fired is the one set: steps or depth at the limit
    if limits["max_steps"] == 5:
        assert all(int(code.steps) == 5 for code in hard_codes)
        assert all(int(code.steps) < 5 for code in easy_codes)
    if limits["max_depth"] == 3:
        assert all(int(code.depth) <= 3 for code in hard_codes + easy_codes)


@pytest.fixture(scope="module")
def dad_runs():
    mu, s = 1.0, 0.25  # D_KL = 2.0 bits, D_inf = 2.8 bits
    keys, target, prior = _problems([(mu, s, 0.0, 1.0)], N, seed=4)
    runs = {}
    for d, coder in DAD_CODERS.items():
        enc, dec = _vmapped(coder)
        codes = enc(keys, target, prior)
        runs[d] = (codes, np.asarray(dec(keys, codes, prior)[:, 0]))
    return (keys, target, prior), stats.norm(mu, s).cdf, runs


@pytest.mark.slow
def test_dadstar_bias_falls_with_depth(dad_runs):
    _, cdf, runs = dad_runs
    distance = {d: stats.kstest(xs, cdf).statistic for d, (_, xs) in runs.items()}
    assert distance[2] > 0.05  # a depth-2 tree (7 samples) is far from Q ...
    assert distance[2] > 3 * distance[5]
    assert stats.kstest(runs[5][1], cdf).pvalue > 1e-3  # ... depth 5 (63 samples) is close
    for d, (codes, _) in runs.items():
        assert not np.asarray(codes.exhausted).any()  # hitting the depth limit is the design
        assert int(np.asarray(codes.depth).max()) <= d  # heap index < 2^(d+1)
    # DAD* codes are AD* tree nodes: relabelled, the AD* decoder returns the same samples
    (keys, _, prior), _, _ = dad_runs
    codes, xs = runs[2]
    relabelled = codes.replace(coder="adstar")
    np.testing.assert_array_equal(np.asarray(_vmapped(jaxrec.adstar())[1](keys, relabelled, prior)[:, 0]), xs)


@pytest.mark.slow
def test_dadstar_is_the_argmax_over_its_tree(dad_runs):
    problems, _, runs = dad_runs
    codes, xs = runs[5]
    for i in range(8):
        key, target, prior = _lane(problems, i)
        node, x = _reference_node(key, target, prior, SPLITS["dadstar"], 5)
        assert ts.heap_index(codes.depth[i], codes.path[i]) == ts.heap_index(node.depth, node.path)
        np.testing.assert_allclose(float(x[0]), xs[i], rtol=1e-6)


@pytest.mark.slow
def test_float64_far_tail():
    with jax.enable_x64(True):
        coder = jaxrec.astar(max_depth=128)
        prior = jaxrec.DiagGaussian(jnp.zeros(1, jnp.float64), jnp.ones(1, jnp.float64))
        mu, s = 6.0, 1e-9  # D_inf = 56 bits: depth ~55 (2 path words), far tail, intervals ~1e-9 wide
        n = 2000
        keys = jax.random.split(jax.random.key(6), n)
        target = jaxrec.DiagGaussian(jnp.full((n, 1), mu), jnp.full((n, 1), s))
        enc = jax.jit(jax.vmap(coder.encode, in_axes=(0, 0, None)))
        dec = jax.jit(jax.vmap(coder.decode, in_axes=(0, 0, None)))
        codes = enc(keys, target, prior)
        xs = dec(keys, codes, prior)
        assert xs.dtype == jnp.float64
        assert not np.asarray(codes.exhausted).any()
        assert np.asarray(codes.depth).mean() > 40
        z = (np.asarray(xs[:, 0]) - mu) / s
        assert stats.kstest(z, stats.norm().cdf).pvalue > 1e-3


def test_bad_inputs_raise():
    coder = jaxrec.astar()
    p1 = jaxrec.DiagGaussian(0.0, 1.0)
    with pytest.raises(InvalidArgumentError, match="1-D"):
        coder.encode(0, jaxrec.DiagGaussian(jnp.zeros(2), 0.1 * jnp.ones(2)), jaxrec.DiagGaussian(jnp.zeros(2), jnp.ones(2)))
    with pytest.raises(InvalidArgumentError, match="vmap"):
        coder.encode(0, jaxrec.DiagGaussian(jnp.zeros((3, 1)), 0.1 * jnp.ones((3, 1))), p1)
    with pytest.raises(InvalidArgumentError, match="bounded"):
        coder.encode(0, jaxrec.DiagGaussian(0.0, 1.0), p1)
    with pytest.raises(InvalidArgumentError, match="DiagGaussian"):
        coder.encode(0, jaxrec.Uniform(0.0, 0.5), p1)
    with pytest.raises(InvalidArgumentError, match="event sizes"):
        coder.encode(0, jaxrec.DiagGaussian(jnp.zeros(2), jnp.ones(2)), p1)
    with pytest.raises(InvalidArgumentError, match="seed"):
        coder.encode(-1, jaxrec.DiagGaussian(0.0, 0.1), p1)
    for factory, kwargs in [(jaxrec.astar, {"capacity": 0}), (jaxrec.adstar, {"max_steps": 0}),
                            (jaxrec.astar, {"max_depth": 0}), (jaxrec.dadstar, {"depth": 0}),
                            (jaxrec.dadstar, {"depth": 2.5}), (jaxrec.astar, {"capacity": 2**21})]:
        with pytest.raises(InvalidArgumentError, match=f"{next(iter(kwargs))} must be an int"):
            factory(**kwargs)
    good = ts.TreeCode(
        jnp.int32(1), jnp.zeros((2,), jnp.uint32), jnp.int32(3), jnp.int32(0), coder=coder.spec.name, event_size=1
    )
    with pytest.raises(InvalidArgumentError, match="TreeCode"):
        coder.decode(0, jaxrec.Code(jnp.int32(1), jnp.int32(1), jnp.int32(0), coder="pfr", event_size=1), p1)
    with pytest.raises(InvalidArgumentError, match="vmap"):
        coder.decode(0, good.replace(path=jnp.zeros((3, 2), jnp.uint32)), p1)
    with pytest.raises(InvalidArgumentError, match="prior"):
        coder.decode(0, good, jaxrec.DiagGaussian(jnp.zeros(2), jnp.ones(2)))


def _tree_search_reference(tree, limit=None):
    """``(best position, steps)`` of A* on the float64 tree of :mod:`tree_reference`, without a queue:
    the answer is the argmax of ``ln r(X_B) - ln T_B`` over the nodes (of depth ``<= limit`` for DAD*),
    and A* expands exactly the nodes whose bound exceeds that best score (below ``limit``): each
    such node's ancestors have larger bounds, so they are all popped before the search can stop, and
    a node of smaller bound is never on top while an ancestor of the best node is queued.  ``steps``
    counts node samples: the root and two per expanded node."""
    deep = np.inf if limit is None else limit
    scores = np.where(tree.depth <= deep, tree.score, -np.inf)
    best = int(np.argmax(scores))
    expanded = (tree.bound > scores[best]) & (tree.depth < deep)
    return best, 1 + 2 * int(expanded.sum())


@pytest.mark.slow  # 3-5 s cold per coder in the fast tier
@pytest.mark.mutation
@pytest.mark.parametrize("name", ["astar", "adstar", "dadstar"])
def test_tree_coders_choose_and_decode_the_node_an_exhaustive_float64_tree_chooses(name):
    """AS*, AD* and DAD* (depth 3) against the whole tree to depth 10 computed independently in float64
    (:mod:`tree_reference`, only the node draws from the library) on 16 keys of a shifted, scale-2
    prior: the chosen node (depth and path), ``steps`` and ``OK`` exactly, and the decoder's sample is
    that node's.  Every key is certified: no node at depth 10 has a bound above the best score, so no
    deeper node can beat it or be expanded (coders/tree mutation survivors: the searches were only
    compared with a reference in the slow tier, and that reference used the coder's own node functions)."""
    row, depth = KS_PAIRS[1], 10
    coder = {"astar": jaxrec.astar(), "adstar": jaxrec.adstar(), "dadstar": jaxrec.dadstar(3)}[name]
    keys = jax.random.split(jax.random.key(51), 16)
    target, prior = gaussian_pair(row)
    enc, dec = compiled(coder)
    codes = enc(keys, target, prior)
    xs = np.asarray(dec(keys, codes, prior)[:, 0], np.float64)
    got = tree_reference.code_fields(codes)
    u, e = tree_reference.node_randomness(keys, depth, np.asarray(codes.path).shape[-1])
    for i in range(len(keys)):
        nodes = tree_reference.Tree(u[i], e[i], row, SPLITS[name])
        best, steps = _tree_search_reference(nodes, 3 if name == "dadstar" else None)
        assert nodes.bound[nodes.levels(depth)].max() < nodes.score[best], i  # certified
        assert got[i].tolist() == [nodes.depth[best], nodes.word[best], steps, 0], i
        np.testing.assert_allclose(xs[i], row[2] + row[3] * nodes.z[best], rtol=1e-5, atol=1e-5 * row[1])
    assert got[:, 0].max() >= 3  # a few levels deep, beyond the first path bits


def test_tree_coders_header_entries_and_the_gaussian_ratio():
    """The tree coders' registry entries (parameters in header order; DAD* and branch-and-bound GPRS
    name their depth limit ``depth`` and ``max_depth``), their message (the node's 0-based heap index
    under the PFR Zipf model of the budget), ``(depth, path)`` packed to ``heap_index - 1`` and unpacked
    with the spec's own depth limit; the factories' defaults and cache; ``gaussian_ratio`` against its
    closed form in the prior's standard coordinates, unbounded for ``s >= 1``."""
    zipf = lambda bits: jaxrec.entropy.ZipfModel(float(np.float32(jaxrec.entropy.zipf_exponent(bits))))
    coders = {"astar": jaxrec.astar(), "adstar": jaxrec.adstar(), "dadstar": jaxrec.dadstar(3), "gprs_bnb": jaxrec.gprs_bnb()}
    assert coders["astar"].spec.kwargs == {"capacity": 256, "max_steps": 2**16, "max_depth": 64}
    assert coders["adstar"].spec.kwargs == {"capacity": 256, "max_steps": 2**16, "max_depth": 64}
    assert coders["dadstar"].spec.kwargs == {"capacity": 256, "max_steps": 2**16, "depth": 3}
    assert coders["gprs_bnb"].spec.kwargs == {"split": "sample", "capacity": 64, "max_steps": 2**12, "max_depth": 128}
    assert all(coders[name] is factory() for name, factory in (("astar", jaxrec.astar), ("adstar", jaxrec.adstar),
                                                                ("gprs_bnb", jaxrec.gprs_bnb)))
    assert coders["dadstar"] is jaxrec.dadstar(3)  # every tree factory is cached (coder_factory)
    depth = np.array([0, 2, 3])
    path = np.array([[0], [0b10], [0b101]], np.uint32)
    want = [ts.heap_index(int(d), p) - 1 for d, p in zip(depth, path)]
    for name, coder in coders.items():
        entry = REGISTRY[name]
        limit = "depth" if name == "dadstar" else "max_depth"
        assert entry.params == (("split",) if name == "gprs_bnb" else ()) + ("capacity", "max_steps", limit), name
        assert entry.message(coder.spec, 5.0, None) == (("heap_index", zipf(5.0)),), name
        words = ts.path_words(coder.spec.kwargs[limit])
        symbols = entry.pack(coder.spec, {"depth": depth, "path": np.pad(path, ((0, 0), (0, words - 1)))})
        assert symbols["heap_index"].tolist() == want, name
        back = entry.unpack(coder.spec, symbols)
        assert back["depth"].tolist() == depth.tolist() and back["path"][:, 0].tolist() == path[:, 0].tolist(), name
        assert back["path"].shape == (3, words), name
    with pytest.raises(InvalidArgumentError, match="depth 4 exceeds max_depth 3"):
        REGISTRY["dadstar"].unpack(coders["dadstar"].spec, {"heap_index": np.array([2**4])})
    mu, s = (0.9 - 0.4) / 1.5, 0.35 / 1.5
    ratio = tree.gaussian_ratio(jaxrec.DiagGaussian(0.9, 0.35), jaxrec.DiagGaussian(0.4, 1.5))
    np.testing.assert_allclose([float(ratio.mode), float(ratio.curvature), float(ratio.log_m)],
                               [mu / (1 - s**2), (1 - s**2) / (2 * s**2), -np.log(s) + mu**2 / (2 * (1 - s**2))], rtol=1e-5)
    assert bool(ratio.bounded) and not bool(tree.gaussian_ratio(jaxrec.DiagGaussian(0.5, 2.0), jaxrec.DiagGaussian(0.0, 1.5)).bounded)
    # s = 1 exactly (equal scales) is unbounded too, also with equal means (where the closed form is 0/0)
    assert not bool(tree.gaussian_ratio(jaxrec.DiagGaussian(0.4, 1.5), jaxrec.DiagGaussian(0.4, 1.5)).bounded)


def test_tree_coder_limits_at_and_past_their_ends():
    """Each tree coder accepts ``capacity`` up to the queue's ``2^20``, ``max_steps`` up to ``2^31 - 3`` and
    its depth limit up to 1024, and refuses one more, naming the argument and its range (no coder is
    compiled: the factories only check)."""
    factories = {"astar": jaxrec.astar, "adstar": jaxrec.adstar, "gprs_bnb": jaxrec.gprs_bnb,
                 "dadstar": lambda **kw: jaxrec.dadstar(kw.pop("max_depth", 3), **kw)}
    for name, factory in factories.items():
        for argument, limit in (("capacity", 2**20), ("max_steps", 2**31 - 3), ("max_depth", 1024)):
            factory(**{argument: limit})
            shown = "depth" if (name, argument) == ("dadstar", "max_depth") else argument
            with pytest.raises(InvalidArgumentError, match=f"{shown} must be an int in \\[1, {limit}\\], got {limit + 1}"):
                factory(**{argument: limit + 1})


@pytest.mark.slow  # 5-10 s cold (one more program)
@pytest.mark.mutation
def test_exact_search_never_splits_a_node_at_max_depth():
    """AD* with ``max_depth = 2`` never returns a node deeper than 2, and a search that needs to split a
    node at depth 2 ends ``EXHAUSTED`` (coders/tree/_astar mutation survivor ``depth <= max_depth``)."""
    row = KS_PAIRS[1]
    coder = jaxrec.adstar(max_depth=2)
    keys = jax.random.split(jax.random.key(51), 16)
    codes = compiled(coder)[0](keys, *gaussian_pair(row))
    depth, status = np.asarray(codes.depth), np.asarray(codes.status)
    assert depth.max() <= 2 and (status == 1).any() and (status == 0).any(), (depth, status)


@pytest.mark.slow  # 3-6 s cold per coder (each compiles twice: without and with x64)
@pytest.mark.mutation
@pytest.mark.parametrize("name", ["astar", "adstar", "gprs_bnb"])
def test_float32_tree_codes_and_samples_do_not_depend_on_the_x64_flag(name):
    """A float32 problem is searched and decoded in float32 whether or not x64 is enabled (the node
    uniforms take the prior's dtype, not the default float): the same nodes, steps and statuses, and
    the same float32 samples bit for bit (coders/tree/partition_tree mutation survivors: ``dtype =
    None`` in the search or the decoder)."""
    coder = {"astar": jaxrec.astar(), "adstar": jaxrec.adstar(), "gprs_bnb": jaxrec.gprs_bnb()}[name]
    keys = jax.random.split(jax.random.key(52), 8)
    target, prior = gaussian_pair(KS_PAIRS[1])
    enc, dec = compiled(coder)

    def run():
        codes = enc(keys, target, prior)
        return tree_reference.code_fields(codes), np.asarray(dec(keys, codes, prior))

    plain_fields, plain_xs = run()
    with jax.enable_x64(True):
        wide_fields, wide_xs = run()
    np.testing.assert_array_equal(wide_fields, plain_fields)
    assert plain_xs.dtype == wide_xs.dtype == np.float32
    np.testing.assert_array_equal(wide_xs, plain_xs)
    assert plain_fields[:, 0].max() >= 2  # nodes below the root, so the node draws matter


def test_tree_nodes_of_zero_prior_mass_are_never_scored_or_queued():
    """A split-on-sample node whose uniform is exactly 0 cuts at ``-inf``: its left child has prior mass
    0 and gets score and bound ``-inf`` (never chosen, never queued), the right child keeps the parent's
    interval and mass.  ``check_prior`` refuses every prior but one 1-D ``DiagGaussian`` without batch axes
    (coders/tree/partition_tree mutation survivors)."""
    ratio = tree.gaussian_ratio(jaxrec.DiagGaussian(0.3, 0.5), jaxrec.DiagGaussian(0.0, 1.0))
    inf = jnp.float32(jnp.inf)
    node = tree.Node(jnp.int32(0), jnp.zeros((1,), jnp.uint32), -inf, inf, jnp.float32(0.0), jnp.float32(0.0),
                     jnp.float32(0.0), -inf)
    kids, scores, bounds = tree.child_nodes(jax.random.key(3), ratio, node, tree.SAMPLE_SPLIT)
    assert float(scores[0]) == float(bounds[0]) == float(kids.log_mass[0]) == -np.inf
    assert np.isfinite(float(scores[1])) and np.isfinite(float(bounds[1])) and float(kids.log_mass[1]) == 0.0
    assert [float(kids.lo[1]), float(kids.hi[1])] == [-np.inf, np.inf]
    tree.check_prior(jaxrec.DiagGaussian(0.0, 1.0))
    for prior in (jaxrec.Uniform(0.0, 1.0), jaxrec.DiagGaussian(jnp.zeros(2), jnp.ones(2)),
                  jaxrec.DiagGaussian(jnp.zeros((3, 1)), jnp.ones((3, 1)))):
        with pytest.raises(InvalidArgumentError, match="^prior must be a 1-D DiagGaussian without batch axes, got "):
            tree.check_prior(prior)
