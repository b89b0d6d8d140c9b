"""Tests for the tree-search core: the bounded priority queue and heap-index paths."""

import heapq

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrec
from jaxrec.coders.tree import paths
from jaxrec.core import prng
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.search import heap as ts

ITEM = {"id": jnp.int32(0), "pair": jnp.zeros((2,), jnp.float32)}


def _run_ops(capacity, is_push, priorities, ids):
    """Replays a push/pop sequence in a lax.scan; per op: (popped priority, popped id, size, overflow)."""

    def step(heap, op):
        push, p, i = op
        pushed = ts.heap_push(heap, p, {"id": i, "pair": jnp.stack([p, -p])}, when=push)
        top, item, popped = ts.heap_pop(heap)
        heap = jax.tree.map(lambda a, b: jnp.where(push, a, b), pushed, popped)
        out_p = jnp.where(push, jnp.nan, top)
        out_id = jnp.where(push | (heap.size < 0), -1, item["id"])
        pair_ok = push | (top == -jnp.inf) | jnp.all(item["pair"] == jnp.stack([top, -top]))
        return heap, (out_p, out_id, heap.size, heap.overflow, pair_ok)

    heap = ts.heap_init(capacity, ITEM)
    return jax.lax.scan(step, heap, (is_push, priorities, ids))[1]


_run_ops_jit = jax.jit(_run_ops, static_argnums=0)


@pytest.mark.parametrize(
    "capacity,push_rate,seed,overflows", [(128, 0.5, 0, False), (16, 0.6, 1, True), (5, 0.5, 2, True), (1, 0.6, 3, True)]
)
def test_heap_matches_heapq(capacity, push_rate, seed, overflows):
    rng = np.random.default_rng(seed)
    n = 600
    is_push = rng.random(n) < push_rate
    # Coarse priorities force ties; ids are unique, so ties are checked by priority only.
    priorities = np.round(rng.normal(size=n), 1).astype(np.float32)
    ids = np.arange(n, dtype=np.int32)
    out_p, out_id, size, overflow, pair_ok = map(
        np.asarray, _run_ops_jit(capacity, jnp.asarray(is_push), jnp.asarray(priorities), jnp.asarray(ids))
    )
    ref, overflowed, pops = [], False, 0
    for k in range(n):
        if is_push[k]:
            if len(ref) < capacity:
                heapq.heappush(ref, (-priorities[k], ids[k]))
            else:
                overflowed = True
        elif ref:
            neg_p, _ = heapq.heappop(ref)
            assert out_p[k] == -neg_p
            assert priorities[out_id[k]] == -neg_p  # the popped item belongs to that priority
            pops += 1
        else:
            assert out_p[k] == -np.inf
        assert size[k] == len(ref)
        assert bool(overflow[k]) == overflowed
    assert pair_ok.all()
    assert pops > 50
    assert overflowed == overflows  # both regimes are exercised


def test_heap_pop_empty_and_refill():
    heap = ts.heap_init(4, ITEM)
    top, _, heap2 = ts.heap_pop(heap)
    assert top == -jnp.inf and heap2.size == 0 and not heap2.overflow
    assert ts.heap_top(heap2) == -jnp.inf
    for p in [3.0, 1.0, 2.0, 5.0]:
        heap2 = ts.heap_push(heap2, p, {"id": jnp.int32(int(p)), "pair": jnp.zeros(2)})
    heap2 = ts.heap_push(heap2, 9.0, {"id": jnp.int32(9), "pair": jnp.zeros(2)}, when=False)  # masked: no-op
    assert heap2.size == 4 and not heap2.overflow
    got = []
    for _ in range(4):
        top, item, heap2 = ts.heap_pop(heap2)
        got.append((float(top), int(item["id"])))
    assert got == [(5.0, 5), (3.0, 3), (2.0, 2), (1.0, 1)]
    # Pool slots are recycled: refilling to capacity does not overflow.
    for p in range(4):
        heap2 = ts.heap_push(heap2, float(p), {"id": jnp.int32(p), "pair": jnp.zeros(2)})
    assert heap2.size == 4 and not heap2.overflow
    assert sorted(np.asarray(heap2.slot).tolist()) == [0, 1, 2, 3]


def test_heap_top_ties_and_the_capacity_limits():
    """``heap_top`` of a one-item heap is its priority; a pushed item never moves above an equal
    priority (equal priorities pop first-in first-out here); capacity ``2^20`` is accepted, one more refused."""
    heap = ts.heap_push(ts.heap_init(4, ITEM), 2.5, {"id": jnp.int32(7), "pair": jnp.zeros(2)})
    assert heap.size == 1 and float(ts.heap_top(heap)) == 2.5
    for i in range(1, 3):
        heap = ts.heap_push(heap, 2.5, {"id": jnp.int32(7 + i), "pair": jnp.zeros(2)})
    top, item, heap = ts.heap_pop(heap)
    assert float(top) == 2.5 and int(item["id"]) == 7  # the first of three equal priorities stayed on top
    assert ts.heap_init(ts.MAX_CAPACITY, ITEM).priority.shape == (ts.MAX_CAPACITY,)
    with pytest.raises(InvalidArgumentError, match="capacity must be an int"):
        ts.heap_init(ts.MAX_CAPACITY + 1, ITEM)


@pytest.mark.parametrize("capacity", [127, 128])
def test_full_deep_heaps_pop_in_order(capacity):
    """Fill a heap of 7-8 levels to capacity, then pop it empty: priorities come out sorted with
    their own items (the sift-down must reach the deepest level), then ``-inf``."""
    rng = np.random.default_rng(capacity)
    priorities = rng.permutation(capacity).astype(np.float32)
    is_push = np.r_[np.ones(capacity, bool), np.zeros(capacity + 1, bool)]
    ps = np.r_[priorities, np.zeros(capacity + 1, np.float32)]
    ids = np.r_[np.arange(capacity), np.zeros(capacity + 1, int)].astype(np.int32)
    out_p, out_id, size, overflow, pair_ok = (np.asarray(a) for a in _run_ops_jit(capacity, *map(jnp.asarray, (is_push, ps, ids))))
    pops = slice(capacity, 2 * capacity)
    np.testing.assert_array_equal(out_p[pops], np.sort(priorities)[::-1])
    np.testing.assert_array_equal(priorities[out_id[pops]], out_p[pops])
    assert out_p[-1] == -np.inf and size[capacity - 1] == capacity and size[-1] == 0
    assert not overflow.any() and pair_ok.all()


def test_heap_under_vmap():
    def fill(ps):
        heap = ts.heap_init(8, ITEM)
        for i in range(ps.shape[0]):
            heap = ts.heap_push(heap, ps[i], {"id": jnp.int32(i), "pair": jnp.zeros(2)})
        top, item, _ = ts.heap_pop(heap)
        return top, item["id"]

    ps = jax.random.normal(jax.random.key(0), (32, 6))
    tops, ids = jax.jit(jax.vmap(fill))(ps)
    np.testing.assert_array_equal(tops, ps.max(axis=1))
    np.testing.assert_array_equal(ids, ps.argmax(axis=1))


def test_heap_init_rejects_bad_capacity():
    for bad in [0, -1, 2**21, 2.0, True]:
        with pytest.raises(InvalidArgumentError, match="capacity"):
            ts.heap_init(bad, ITEM)


@pytest.mark.parametrize("index", [1, 2, 3, 5, 12, 2**31 - 1, 2**31, 2**40 + 12345, 2**70 + 3])
def test_heap_index_round_trip(index):
    depth, path = paths.from_heap_index(index, max_depth=80)
    assert int(depth) == index.bit_length() - 1
    assert path.shape == (paths.path_words(80),) and path.dtype == jnp.uint32
    assert paths.heap_index(depth, path) == index


def test_path_bits_build_the_heap_index():
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 2, size=70)
    path = jnp.zeros((paths.path_words(70),), jnp.uint32)
    index = 1
    for level, bit in enumerate(bits, start=1):
        path = paths.with_bit(path, jnp.int32(level), jnp.int32(bit))
        index = 2 * index + int(bit)
        assert paths.heap_index(level, path) == index
    for level, bit in enumerate(bits, start=1):
        assert int(paths.path_bit(path, jnp.int32(level))) == bit
    # prefix(path, d) is the ancestor at depth d.
    for d in [0, 1, 31, 32, 33, 64, 70]:
        assert paths.heap_index(d, paths.prefix(path, jnp.int32(d))) == index >> (70 - d)


def test_from_heap_index_rejects_bad_input():
    with pytest.raises(InvalidArgumentError, match="heap index must be"):
        paths.from_heap_index(0, 10)
    with pytest.raises(InvalidArgumentError, match="depth 11 > max_depth 10"):
        paths.from_heap_index(2**11, 10)  # depth 11 > 10
    assert paths.path_words(1) == 1 and paths.path_words(32) == 1 and paths.path_words(33) == 2


def test_prefix_clears_every_bit_below_the_ancestor():
    """``prefix`` keeps the branch bits of levels ``<= depth`` and clears all others, in every word
    (``heap_index`` reads only the kept levels, so it cannot see stray bits: compare the words)."""
    words = np.random.default_rng(9).integers(0, 2**32, size=3, dtype=np.uint64)
    full = sum(int(w) << (32 * i) for i, w in enumerate(words))
    path = jnp.asarray(words.astype(np.uint32))
    for d in [0, 1, 5, 31, 32, 33, 63, 64, 65, 95, 96]:
        kept = full & ((1 << d) - 1)
        want = [(kept >> (32 * i)) & 0xFFFFFFFF for i in range(3)]
        assert np.asarray(paths.prefix(path, jnp.int32(d))).astype(np.int64).tolist() == want, d


def test_depth_limits_are_inclusive():
    depth, path = paths.from_heap_index(2**10 + 5, 10)  # depth == max_depth is allowed
    assert int(depth) == 10 and paths.heap_index(depth, path) == 2**10 + 5
    depth, path = paths.from_heap_index(1, 10)  # the root
    assert int(depth) == 0 and not np.asarray(path).any()
    with pytest.raises(InvalidArgumentError, match="heap index must be"):
        paths.from_heap_index(True, 10)
    jaxrec.astar(max_depth=paths.MAX_DEPTH)
    with pytest.raises(InvalidArgumentError, match="max_depth"):
        jaxrec.astar(max_depth=paths.MAX_DEPTH + 1)


def test_packed_heap_indices_match_the_host_heap_index_and_round_trip():
    """``pack_heap_index`` gives the 0-based heap index ``heap_index - 1`` of every node of a batch
    (int64, depths 0 to ``MAX_SENT_DEPTH``, across word boundaries), ``unpack_heap_index`` inverts
    it; deeper nodes and depths beyond ``max_depth`` are refused."""
    rng = np.random.default_rng(11)
    depths = np.array([[0, 1, 5, 31], [32, 33, 40, paths.MAX_SENT_DEPTH]])
    indices = [[(1 << int(d)) + int(rng.integers(0, 1 << int(d))) if d else 1 for d in row] for row in depths]
    nodes = [[paths.from_heap_index(i, 64) for i in row] for row in indices]
    depth = np.array([[int(n[0]) for n in row] for row in nodes])
    path = np.array([[np.asarray(n[1]) for n in row] for row in nodes])
    packed = paths.pack_heap_index(depth, path)
    assert packed.dtype == np.int64 and packed.shape == (2, 4)
    np.testing.assert_array_equal(packed, np.array(indices, dtype=object).astype(np.int64) - 1)
    got_depth, got_path = paths.unpack_heap_index(packed, 64)
    assert got_depth.dtype == np.int32 and got_path.dtype == np.uint32 and got_path.shape == (2, 4, 2)
    np.testing.assert_array_equal(got_depth, depth)
    np.testing.assert_array_equal(got_path, path)
    assert paths.pack_heap_index(np.zeros((0,), int), np.zeros((0, 2), np.uint32)).shape == (0,)
    with pytest.raises(InvalidArgumentError, match="depth 63 cannot be sent"):
        paths.pack_heap_index(np.array([63]), np.zeros((1, 2), np.uint32))
    np.testing.assert_array_equal(paths.unpack_heap_index(packed[0], 31)[0], depth[0])  # depth == max_depth
    with pytest.raises(InvalidArgumentError, match="depth 62 exceeds max_depth 61"):
        paths.unpack_heap_index(packed, 61)


def test_node_keys_depend_on_depth_and_path_only():
    key = jax.random.key(3)
    d1, p1 = paths.from_heap_index(0b1011, 40)  # depth 3
    d2, p2 = paths.from_heap_index(0b10110, 40)  # its left child: same path bits, depth 4
    data = lambda k: np.asarray(jax.random.key_data(k))
    k1 = prng.tree_node_key(key, d1, p1)
    assert (data(k1) == data(prng.tree_node_key(key, d1, p1))).all()
    assert not (data(k1) == data(prng.tree_node_key(key, d2, p2))).all()
    assert not (data(prng.node_location_key(k1)) == data(prng.node_private_key(k1))).all()
    assert not (data(k1) == data(prng.tree_node_key(jax.random.key(4), d1, p1))).all()


def test_packed_heap_indices_at_every_depth_and_with_the_fewest_words():
    """Every depth 0 to ``MAX_SENT_DEPTH`` packs to ``heap_index - 1`` and unpacks back (the
    ``floor(log2)`` search of ``unpack_heap_index`` is exact at each depth, not only at a few), and
    paths of exactly ``path_words(max_depth)`` words are enough at a depth that fills its last word
    (depth 32 in one word: no level past the deepest node is read or written)."""
    rng = np.random.default_rng(12)
    depths = np.arange(paths.MAX_SENT_DEPTH + 1)
    indices = [(1 << int(d)) + int(rng.integers(0, 1 << int(d))) if d else 1 for d in depths]
    nodes = [paths.from_heap_index(i, paths.MAX_SENT_DEPTH) for i in indices]
    depth = np.array([int(n[0]) for n in nodes])
    path = np.array([np.asarray(n[1]) for n in nodes])
    packed = paths.pack_heap_index(depth, path)
    np.testing.assert_array_equal(packed, np.array(indices, dtype=object).astype(np.int64) - 1)
    got_depth, got_path = paths.unpack_heap_index(packed, paths.MAX_SENT_DEPTH)
    np.testing.assert_array_equal(got_depth, depths)
    np.testing.assert_array_equal(got_path, path)
    index = (1 << 32) + 0x9E3779B9  # depth 32, every word bit used
    depth32, path32 = paths.from_heap_index(index, 32)
    assert np.asarray(path32).shape == (1,)
    packed32 = paths.pack_heap_index(np.array([int(depth32)]), np.asarray(path32)[None])
    assert packed32.tolist() == [index - 1]
    got_depth, got_path = paths.unpack_heap_index(packed32, 32)
    assert got_depth.tolist() == [32] and got_path.tolist() == [[int(path32[0])]]


def test_tree_code_pytree_and_the_depth_limit():
    """A ``TreeCode``'s leaves are its arrays (``coder`` and ``event_size`` are static metadata, kept
    through flatten/unflatten), its message is ``(depth, path)``; the tree coders accept
    ``max_depth`` up to 1024 (32 path words) and refuse 1025."""
    code = jaxrec.TreeCode(
        jnp.int32(3), jnp.zeros((2,), jnp.uint32), jnp.int32(4), jnp.int32(0), coder="astar", event_size=5
    )
    leaves, treedef = jax.tree.flatten(code)
    assert len(leaves) == 4
    rebuilt = jax.tree.unflatten(treedef, leaves)
    assert rebuilt.event_size == 5 and rebuilt.coder == "astar"
    assert list(code.message) == ["depth", "path"]
    assert paths.path_words(1024) == 32
    jaxrec.gprs_bnb(max_depth=1024)
    for factory in (jaxrec.astar, jaxrec.gprs_bnb):
        with pytest.raises(InvalidArgumentError, match="max_depth"):
            factory(max_depth=1025)
