"""Tests of jaxrec.coding: ideal codelengths, constriction round trips, bad and corrupt input."""

import dataclasses
import math

import constriction
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from hypothesis import assume, given, settings

from jaxrec import entropy
from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.entropy import models as entropy_models

FAST = settings(max_examples=40, deadline=None, derandomize=True)

ZIPF = entropy.ZipfModel(entropy.zipf_exponent(4.0))
HUGE = [0, 1, 2, 3, 15, 16, 17, 31, 32, 1000, 2**40 + 12345, 2**62 - 1, 2**62, entropy.MAX_ZIPF_INDEX]


def round_trip(indices, model):
    data = entropy.encode_indices(indices, model)
    assert isinstance(data, bytes) and len(data) % 4 == 0
    out = entropy.decode_indices(data, model, len(indices))
    assert out.dtype == np.int64 and out.shape == (len(indices),)
    np.testing.assert_array_equal(out, np.asarray(indices, dtype=np.int64))
    return data


# ---------------------------------------------------------------------------------------------
# Ideal codelengths
# ---------------------------------------------------------------------------------------------


def test_zipf_exponent_values_and_jit():
    assert entropy.zipf_exponent(0.0) == 2.0
    assert entropy.zipf_exponent(3) == pytest.approx(1.25)
    np.testing.assert_allclose(entropy.zipf_exponent(np.array([0.0, 1.0])), [2.0, 1.5])
    assert float(jax.jit(entropy.zipf_exponent)(jnp.float32(1.0))) == pytest.approx(1.5)


@pytest.mark.parametrize("bad", [-1e-9, float("nan"), float("inf"), "abc", [0.0, -1.0]])
def test_zipf_exponent_rejects(bad):
    with pytest.raises(InvalidArgumentError, match="kl_budget_bits must be"):
        entropy.zipf_exponent(bad)


@pytest.mark.parametrize("alpha", [1.05, 1.5, 2.0])
def test_zipf_bits_matches_brute_force(alpha):
    n = np.arange(1, 2**20 + 1, dtype=np.float64)
    # zeta(alpha) by direct summation plus the Euler-Maclaurin tail of sum_{m > M} m^-alpha
    m = n[-1]
    tail = m ** (1 - alpha) / (alpha - 1) - m**-alpha / 2 - alpha * m ** (-alpha - 1) / 12
    zeta = np.sum(n**-alpha) + tail
    assert zeta == pytest.approx(scipy.special.zeta(alpha), rel=1e-10)
    bits = np.asarray(entropy.zipf_bits(np.arange(2**20), alpha), dtype=np.float64)
    np.testing.assert_allclose(bits, alpha * np.log2(n) + np.log2(zeta), rtol=2e-6, atol=2e-4)
    # The probabilities sum to 1 (the tail beyond 2**20 added in closed form).
    assert np.sum(2.0**-bits) + tail / zeta == pytest.approx(1.0, abs=1e-4)


def test_zipf_bits_jit_and_huge_numpy_index():
    alpha = 1.25
    expected = alpha * 40 + math.log2(scipy.special.zeta(alpha))
    # a numpy int64 beyond int32 must not wrap around when x64 is off
    assert float(entropy.zipf_bits(np.array([2**40 - 1]), alpha)[0]) == pytest.approx(expected, rel=1e-6)
    jitted = jax.jit(entropy.zipf_bits)(jnp.arange(5), jnp.float32(alpha))
    np.testing.assert_allclose(jitted, entropy.zipf_bits(np.arange(5), alpha), rtol=1e-6)


def test_uniform_bits():
    bits = entropy.uniform_bits(np.array([1, 2, 1024, 1000]))
    np.testing.assert_allclose(bits, [0, 1, 10, math.log2(1000)], rtol=1e-6)


def gamma_code(n: int) -> str:
    return "0" * (n.bit_length() - 1) + bin(n)[2:]


def delta_code(n: int) -> str:
    return gamma_code(n.bit_length()) + bin(n)[3:]


def test_elias_known_values():
    n = np.array([1, 2, 3, 4, 7, 8, 16, 17, 100])
    np.testing.assert_array_equal(entropy.elias_gamma_bits(n - 1), [1, 3, 3, 5, 5, 7, 9, 9, 13])
    np.testing.assert_array_equal(entropy.elias_delta_bits(n - 1), [1, 4, 4, 5, 5, 8, 9, 9, 11])
    assert delta_code(17) == "001010001"


def test_elias_lengths_match_the_codes():
    n = np.arange(1, 5000)
    np.testing.assert_array_equal(entropy.elias_gamma_bits(n - 1), [len(gamma_code(int(v))) for v in n])
    np.testing.assert_array_equal(entropy.elias_delta_bits(n - 1), [len(delta_code(int(v))) for v in n])
    jitted = jax.jit(entropy.elias_delta_bits)(jnp.arange(10))
    np.testing.assert_array_equal(jitted, entropy.elias_delta_bits(np.arange(10)))


def sample_indices(family: str, scale: float, seed: int, size: int = 4000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if family == "geometric":
        return rng.geometric(1.0 / (1.0 + scale), size) - 1
    if family == "log_uniform":  # log2(index + 1) about uniform on [0, 2 * scale], capped at 62
        return np.floor(2.0 ** rng.uniform(0, min(2 * scale, 62), size)).astype(np.int64) - 1
    if family == "point":
        return np.full(size, int(2**scale))
    return rng.zipf(1.0 + 1.0 / scale, size) - 1  # "zipf"


@FAST
@given(
    family=st.sampled_from(["geometric", "log_uniform", "point", "zipf"]),
    scale=st.floats(0.5, 40.0),
    seed=st.integers(0, 2**16),
)
def test_zipf_bound(family, scale, seed):
    """mean zipf_bits <= L + log2(L + 1) + 1 with L = E log2(index + 1) and alpha = 1 + 1/L."""
    idx = np.minimum(sample_indices(family, scale, seed), 2**62)
    big_l = float(np.mean(np.log2(idx + 1.0)))
    assume(big_l > 0)  # all-zero indices: alpha = 1 + 1/L is undefined
    mean_bits = float(np.mean(np.asarray(entropy.zipf_bits(idx, 1.0 + 1.0 / big_l), dtype=np.float64)))
    assert mean_bits <= big_l + math.log2(big_l + 1) + 1 + 1e-4 * (1 + big_l)
    # PFR form: E log2(index + 1) <= KL + 1 and alpha = zipf_exponent(KL)
    kl = max(big_l - 1.0, 0.0)
    mean_bits = float(np.mean(np.asarray(entropy.zipf_bits(idx, entropy.zipf_exponent(kl)), dtype=np.float64)))
    assert mean_bits <= kl + math.log2(kl + 2) + 2 + 1e-4 * (1 + kl)


# ---------------------------------------------------------------------------------------------
# Models and bytes
# ---------------------------------------------------------------------------------------------


def test_zipf_table_is_the_exact_dyadic_mass():
    alpha = 1.2
    weights = entropy_models._zipf_bucket_weights(alpha)
    assert weights.shape == (959,) and np.all(weights == np.rint(weights))
    lo = np.ldexp(entropy_models._BUCKET_HEAD, entropy_models._BUCKET_TAIL_BITS)
    hi = np.ldexp(entropy_models._BUCKET_HEAD + 1, entropy_models._BUCKET_TAIL_BITS)
    small = hi <= 2**16
    direct = [np.sum(np.arange(a, b) ** -alpha) for a, b in zip(lo[small], hi[small])]
    total = scipy.special.zeta(alpha) - scipy.special.zeta(alpha, 2.0**63)
    np.testing.assert_allclose(weights[small] / 2.0**32, np.array(direct) / total, rtol=1e-6, atol=2e-10)
    # the buckets tile [1, 2**63) in order
    assert lo[0] == 1 and np.all(lo[1:] == hi[:-1]) and hi[-1] == 2**63


def test_round_trip_huge_zipf_indices():
    round_trip(HUGE, ZIPF)
    round_trip(HUGE[::-1], entropy.ZipfModel(1.0 + 2.0**-30))
    round_trip(HUGE, entropy.ZipfModel(50.0))
    round_trip(np.arange(70000), ZIPF)


@pytest.mark.parametrize(
    "num_symbols", [1, 2, 3, 1000, 2**16, 2**16 + 1, 2**17 - 1, 2**32 + 1, 2**40 + 12346, 2**62]
)
def test_round_trip_uniform(num_symbols):
    model = entropy.UniformModel(num_symbols)
    rng = np.random.default_rng(num_symbols % 2**32)
    idx = [0, num_symbols - 1, num_symbols // 2, num_symbols // 3, *rng.integers(0, num_symbols, 50)]
    data = round_trip(idx, model)
    assert len(data) * 8 <= entropy.ideal_bits(idx, model) + 64 + 0.01 * len(idx)
    assert entropy.ideal_bits(idx, model) == pytest.approx(len(idx) * math.log2(num_symbols))


def test_round_trip_categorical():
    model = entropy.CategoricalModel(np.array([0.5, 0.0, 0.25, 0.25]))
    assert model.probs == (0.5, 0.0, 0.25, 0.25)
    round_trip([0, 2, 3, 3, 0], model)
    assert entropy.ideal_bits([0, 2, 3], model) == pytest.approx(5.0)
    assert entropy.encode_indices([0, 0, 0], entropy.CategoricalModel([1.0])) == b""
    round_trip([0, 0, 0], entropy.CategoricalModel([1.0]))


@FAST
@given(st.lists(st.integers(0, entropy.MAX_ZIPF_INDEX), max_size=60), st.floats(0.0, 1e3))
def test_round_trip_zipf_hypothesis(indices, kl):
    round_trip(indices, entropy.ZipfModel(entropy.zipf_exponent(kl)))


@FAST
@given(st.data(), st.integers(1, 2**62))
def test_round_trip_uniform_hypothesis(data, num_symbols):
    round_trip(data.draw(st.lists(st.integers(0, num_symbols - 1), max_size=40)), entropy.UniformModel(num_symbols))


@FAST
@given(st.data(), st.lists(st.floats(0.0, 1.0), min_size=1, max_size=300).filter(lambda p: sum(p) > 0))
def test_round_trip_categorical_hypothesis(data, probs):
    support = [i for i, p in enumerate(probs) if p > 0]
    round_trip(data.draw(st.lists(st.sampled_from(support), max_size=40)), entropy.CategoricalModel(probs))


def test_multi_stream_round_trip():
    streams = [
        (HUGE, ZIPF),
        (np.array([[3, 4], [5, 6]], dtype=np.uint8), entropy.UniformModel(7)),
        ([], entropy.ZipfModel(1.5)),
        ([0, 0], entropy.UniformModel(1)),
        ([2**61, 5], entropy.UniformModel(2**62)),
        ([1, 1, 0], entropy.CategoricalModel([0.3, 0.7])),
    ]
    data = entropy.encode_streams(streams)
    out = entropy.decode_streams(data, [(model, np.asarray(idx).size) for idx, model in streams])
    for (idx, _), got in zip(streams, out):
        np.testing.assert_array_equal(got, np.asarray(idx, dtype=np.int64).reshape(-1))
    assert entropy.encode_streams([]) == b"" and entropy.decode_streams(b"", []) == []


def test_actual_bits_near_ideal_for_zipf_indices():
    alpha = entropy.zipf_exponent(4.0)
    idx = np.random.default_rng(7).zipf(alpha, 1000) - 1
    actual = 8 * len(round_trip(idx, entropy.ZipfModel(alpha)))
    ideal = entropy.ideal_bits(idx, entropy.ZipfModel(alpha))
    assert -16 <= actual - ideal <= 64, (actual, ideal)  # 2 ANS state words plus < 1e-3 bits per index


def test_models_are_hashable_and_frozen():
    assert hash(entropy.ZipfModel(1.5)) == hash(entropy.ZipfModel(np.float32(1.5)))
    assert entropy.UniformModel(np.int64(10)) == entropy.UniformModel(10)
    assert len({entropy.CategoricalModel([1, 2]), entropy.CategoricalModel((1.0, 2.0))}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        entropy.ZipfModel(1.5).alpha = 2.0


# ---------------------------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("indices", "model", "named"),
    [
        ([1, -3], ZIPF, "-3"),
        ([2**63 - 1], ZIPF, str(2**63 - 1)),
        ([0, 7], entropy.UniformModel(7), "7"),
        ([1], entropy.CategoricalModel([0.5, 0.0]), "1"),
        ([2], entropy.CategoricalModel([0.5, 0.5]), "2"),
        (np.array([0.0, 1.5]), ZIPF, "float64"),
        (np.array([True]), ZIPF, "bool"),
        (np.array([2**64 - 1], dtype=np.uint64), ZIPF, str(2**64 - 1)),
        ([[1, 2], [3]], ZIPF, "[3]"),
        ([0], "zipf", "zipf"),
    ],
)
def test_bad_indices_raise(indices, model, named):
    for call in (
        lambda: entropy.encode_indices(indices, model),
        lambda: entropy.ideal_bits(indices, model),
        lambda: entropy.encode_streams([([0], ZIPF), (indices, model)]),
    ):
        with pytest.raises(InvalidArgumentError, match=named.replace("[", r"\[")):
            call()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: entropy.ZipfModel(1.0), r"^alpha must be finite and >= 1 \+ 2\*\*-30, got 1\.0$"),
        (lambda: entropy.ZipfModel(float("nan")), r"^alpha must be finite and >= 1 \+ 2\*\*-30, got nan$"),
        (lambda: entropy.ZipfModel(float("inf")), r"^alpha must be finite and >= 1 \+ 2\*\*-30, got inf$"),
        (lambda: entropy.ZipfModel("x"), r"^alpha must be a real number, got 'x'$"),
        (lambda: entropy.UniformModel(0), r"^num_symbols must be in \[1, 2\*\*62\], got 0$"),
        (lambda: entropy.UniformModel(2**62 + 1), r"^num_symbols must be in \[1, 2\*\*62\], got 4611686018427387905$"),
        (lambda: entropy.UniformModel(2.5), r"^num_symbols must be an integer, got 2\.5$"),
        (lambda: entropy.UniformModel(True), r"^num_symbols must be in \[1, 2\*\*62\], got True$"),
        (lambda: entropy.CategoricalModel([]), r"^probs must be 1-D with 1 to 2\*\*16 entries, got shape \(0,\)$"),
        (lambda: entropy.CategoricalModel([0.5, -0.1]), r"^probs must be finite and >= 0, got -0\.1 at position 1$"),
        (lambda: entropy.CategoricalModel([0.5, float("nan")]), r"^probs must be finite and >= 0, got nan at position 1$"),
        (lambda: entropy.CategoricalModel([0.0, 0.0]), r"^probs must have a positive sum$"),
        (lambda: entropy.CategoricalModel([[0.5, 0.5]]), r"^probs must be 1-D with 1 to 2\*\*16 entries, got shape \(1, 2\)$"),
        (lambda: entropy.CategoricalModel(["a"]), r"^probs must be an array of real numbers, got \['a'\]$"),
        (lambda: entropy.CategoricalModel(np.ones(2**16 + 1)), r"^probs must be 1-D with 1 to 2\*\*16 entries, got shape \(65537,\)$"),
    ],
)
def test_bad_models_raise(make, message):
    with pytest.raises(InvalidArgumentError, match=message):
        make()


@pytest.mark.parametrize("count", [-1, 2.0, True, "3"])
def test_bad_count_raises(count):
    with pytest.raises(InvalidArgumentError, match="count must be"):
        entropy.decode_indices(b"", ZIPF, count)


def test_non_bytes_data_raises():
    with pytest.raises(InvalidArgumentError, match="data must be bytes"):
        entropy.decode_indices("abcd", ZIPF, 1)


# ---------------------------------------------------------------------------------------------
# Corrupt bytes
# ---------------------------------------------------------------------------------------------

CORRUPT_SPECS = [
    [(ZIPF, 5)],
    [(entropy.ZipfModel(1.01), 3), (entropy.UniformModel(2**40 + 3), 2)],
    [(entropy.UniformModel(5), 4)],
    [(entropy.UniformModel(2**16 + 1), 3)],
    [(entropy.CategoricalModel([0.5, 0.0, 0.5]), 6)],
]


def decode_or_format_error(data, specs):
    """Decode; only FormatError may escape (PanicException derives from BaseException)."""
    try:
        out = entropy.decode_streams(data, specs)
    except BaseException as err:  # noqa: BLE001 - the point is to see every exception type
        assert isinstance(err, FormatError), repr(err)
        return None
    assert [o.shape for o in out] == [(count,) for _, count in specs]
    return out


@FAST
@given(st.binary(max_size=64), st.sampled_from(CORRUPT_SPECS))
def test_random_bytes_raise_only_format_error(data, specs):
    decode_or_format_error(data, specs)


def valid_stream(specs, seed):
    rng = np.random.default_rng(seed)
    streams = []
    for model, count in specs:
        if isinstance(model, entropy.ZipfModel):
            idx = rng.zipf(model.alpha, count) - 1
        elif isinstance(model, entropy.UniformModel):
            idx = rng.integers(0, model.num_symbols, count)
        else:
            idx = rng.choice(np.flatnonzero(model.probs), count)
        streams.append((idx, model))
    return entropy.encode_streams(streams)


@FAST
@given(st.sampled_from(CORRUPT_SPECS), st.integers(0, 2**16), st.data())
def test_truncated_or_padded_bytes_raise_format_error(specs, seed, data):
    valid = valid_stream(specs, seed)
    cut = data.draw(st.integers(1, len(valid)))
    with pytest.raises(FormatError):
        entropy.decode_streams(valid[:-cut], specs)
    with pytest.raises(FormatError):
        entropy.decode_streams(valid + data.draw(st.binary(min_size=1, max_size=8)), specs)


@FAST
@given(st.sampled_from(CORRUPT_SPECS), st.integers(0, 2**16), st.data())
def test_bit_flips_raise_only_format_error(specs, seed, data):
    valid = bytearray(valid_stream(specs, seed))
    bit = data.draw(st.integers(0, 8 * len(valid) - 1))
    valid[bit // 8] ^= 1 << (bit % 8)
    decode_or_format_error(bytes(valid), specs)


def forged_stream(*segments):
    """Bytes a range coder writes for ``(symbols, constriction model)`` segments in order: streams
    no encoder of ours produces but a corrupt file can hold."""
    coder = constriction.stream.queue.RangeEncoder()
    for symbols, model in segments:
        coder.encode(np.asarray(symbols, np.int32), model)
    return coder.get_compressed().astype("<u4").tobytes()


def test_decoded_indices_outside_the_support_raise_format_error_naming_the_first():
    """A ``UniformModel(2**17 + 1)`` index is the digits ``(Uniform(32769), Uniform(4))``, so a
    corrupt stream can decode ``32768 * 4 + 1 .. 3``, at or past ``N``; a leaky categorical model can
    decode a symbol of probability 0.  Both are :class:`FormatError`, naming the first such index
    (not an :class:`InvalidArgumentError` from re-encoding it)."""
    uniform = entropy.UniformModel(2**17 + 1)
    top, low = constriction.stream.model.Uniform(32769), constriction.stream.model.Uniform(4)
    valid = forged_stream(([32768, 1], top), ([0, 3], low))
    np.testing.assert_array_equal(entropy.decode_indices(valid, uniform, 2), [2**17, 7])
    at_n = forged_stream(([32768], top), ([1], low))
    with pytest.raises(FormatError, match=r"^decoded index 131073 is outside \[0, 131073\)$"):
        entropy.decode_indices(at_n, uniform, 1)
    two_bad = forged_stream(([5, 32768, 32768], top), ([0, 3, 1], low))
    with pytest.raises(FormatError, match=r"^decoded index 131075 is outside \[0, 131073\)$"):
        entropy.decode_indices(two_bad, uniform, 3)
    categorical = entropy.CategoricalModel([0.5, 0.0, 0.5, 0.0])
    leaky = categorical._constriction_model()  # every symbol gets a positive quantized mass
    with pytest.raises(FormatError, match=r"^decoded index 3 has probability 0$"):
        entropy.decode_indices(forged_stream(([0, 3, 1], leaky)), categorical, 3)


def test_malformed_stream_lists_raise_naming_the_argument():
    with pytest.raises(InvalidArgumentError, match=r"^streams must be a sequence of \(indices, model\) pairs, got "):
        entropy.encode_streams(5)
    with pytest.raises(InvalidArgumentError, match=r"^streams\[1\] must be an \(indices, model\) pair, got "):
        entropy.encode_streams([([0], ZIPF), ([0], ZIPF, 3)])
    with pytest.raises(InvalidArgumentError, match=r"^specs must be a sequence of \(model, count\) pairs, got "):
        entropy.decode_streams(b"", 3)
    with pytest.raises(InvalidArgumentError, match=r"^specs\[0\] must be an \(model, count\) pair, got "):
        entropy.decode_streams(b"", [(ZIPF,)])


def test_codelength_arguments_are_checked_and_the_message_names_the_first_bad_entry():
    """Indices are whole numbers ``>= 0`` (floats only with integral values), ``alpha`` a finite real
    ``> 1``, ``num_symbols`` whole ``>= 1``; messages start with the argument's name and show the
    first bad entry and its position."""
    cases = [
        (lambda: entropy.zipf_bits(-1, 1.5), r"^index must be whole numbers >= 0, got -1$"),
        (lambda: entropy.elias_gamma_bits(np.array([0.0, 1.5])), r"^index must be whole numbers >= 0, got 1\.5 at index \(1,\)$"),
        (lambda: entropy.elias_delta_bits(np.array([[2.0, 1.0], [-1.0, 0.5]])), r"^index must be .* got -1\.0 at index \(1, 0\)$"),
        (lambda: entropy.zipf_bits(np.array([np.nan]), 1.5), r"^index must be .* got nan at index \(0,\)$"),
        (lambda: entropy.zipf_bits(np.array([3.0, np.inf]), 1.5), r"^index must be .* got inf at index \(1,\)$"),
        (lambda: entropy.zipf_bits([[1, 2], [3]], 1.5), r"^index must be an array of whole numbers >= 0, got "),
        (lambda: entropy.zipf_bits(0, np.inf), r"^alpha must be a finite real number > 1"),
        (lambda: entropy.zipf_bits(0, [[1.5], [2.0, 3.0]]), r"^alpha must be a finite real number > 1"),
        (lambda: entropy.zipf_bits(np.zeros(3, int), np.array([1.5, 2.0])), r"^index and alpha must broadcast together"),
        (lambda: entropy.uniform_bits(np.array([4.0, 2.5])), r"^num_symbols must be whole numbers >= 1, got 2\.5 at index \(1,\)$"),
    ]  # fmt: skip
    for call, match in cases:
        with pytest.raises(InvalidArgumentError, match=match):
            call()
    # accepted: integral floats, concrete scalars as Python floats, N far beyond float32's range
    np.testing.assert_array_equal(entropy.elias_gamma_bits(np.array([2.0, 0.0])), [3, 1])
    assert type(entropy.zipf_exponent(3)) is float and type(entropy.zipf_exponent(np.float32(1.0))) is float
    assert float(entropy.uniform_bits(np.array([2.0**200]))[0]) == 200.0


def test_index_stream_bytes_are_pinned():
    """The index streams are part of the file format: these bytes (written by this version with
    constriction 0.5) must not change, or earlier archives stop decoding.  Indices past 2**16 and
    2**32 exercise the raw-bit chunks of the Zipf tail and of a wide uniform model."""
    zipf_bytes = entropy.encode_indices([0, 5, 2**20 + 3, 2**40 + 12345, 2**62 - 1], ZIPF)
    assert zipf_bytes.hex() == "f3c89511df9bacb45e2d8b6e0000005a0000000000000000"
    uniform_bytes = entropy.encode_indices([2**62 - 5, 3, 2**33 + 1], entropy.UniformModel(2**62))
    assert uniform_bytes.hex() == "fffffefffe0001ff080100ff00f7feffebff0001400830ff"


def test_zipf_index_limit_is_two_to_the_63_minus_2():
    """``MAX_ZIPF_INDEX = 2**63 - 2`` (``index + 1`` fits an int64): that index round-trips, the
    next one is refused naming the range."""
    assert round_trip([2**63 - 2], ZIPF).hex() == "ffffffff100000fe01c0fbff"
    with pytest.raises(InvalidArgumentError, match=r"outside \[0, 2\*\*63 - 1\) of ZipfModel"):
        entropy.encode_indices([2**63 - 1], ZIPF)


def test_model_limits_by_value():
    """The documented limits, at and just past each boundary: ``2**16`` categorical symbols and
    ``alpha >= 1 + 2**-30`` (entropy/models mutation survivors)."""
    assert len(entropy.CategoricalModel(np.ones(2**16)).probs) == 2**16
    with pytest.raises(InvalidArgumentError, match=r"1 to 2\*\*16 entries, got shape \(65537,\)"):
        entropy.CategoricalModel(np.ones(2**16 + 1))
    assert entropy.ZipfModel(1.0 + 2.0**-30).alpha == 1.0 + 2.0**-30
    with pytest.raises(InvalidArgumentError, match=r"alpha must be finite and >= 1 \+ 2\*\*-30"):
        entropy.ZipfModel(1.0 + 2.0**-31)


def test_index_arrays_are_flattened_in_c_order_and_a_negative_index_is_named():
    model = entropy.UniformModel(10)
    data = entropy.encode_indices(np.array([[1, 2, 3], [4, 5, 6]]), model)
    np.testing.assert_array_equal(entropy.decode_indices(data, model, 6), [1, 2, 3, 4, 5, 6])
    with pytest.raises(InvalidArgumentError, match=r"indices must be >= 0, got -1 at position 2"):
        entropy.encode_indices([3, 9, -1, 5, 0], model)


def test_zipf_alpha_is_stored_as_a_python_float_and_its_cached_table_is_read_only():
    """Models group items in a header by equality and hash: an exponent given as a numpy scalar or
    an int is stored as a Python float, so equal exponents give equal models; the bucket table the
    model caches per exponent is shared, so it is read-only."""
    from_numpy = entropy.ZipfModel(np.float32(1.25))
    assert type(from_numpy.alpha) is float and from_numpy == entropy.ZipfModel(1.25)
    assert hash(entropy.ZipfModel(2)) == hash(entropy.ZipfModel(2.0)) and type(entropy.ZipfModel(2).alpha) is float
    table = entropy_models._zipf_bucket_weights(1.25)
    assert not table.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        table[0] = 0.0


def test_more_stream_bytes_are_pinned_at_the_uniform_chunk_boundary_and_for_categoricals():
    """Format bytes (see :func:`test_index_stream_bytes_are_pinned`) of a uniform model at the
    raw-chunk boundary ``2**16`` and just past a power of two, and of categorical models."""
    assert entropy.encode_indices([65535, 0, 7], entropy.UniformModel(2**16)).hex() == "fffffeff000107ff"
    assert entropy.encode_indices([2**20, 1, 5], entropy.UniformModel(2**20 + 1)).hex() == "ffff7fff6c1301ff"
    assert entropy.encode_indices([2, 0, 1, 2], entropy.CategoricalModel((1.0, 2.0, 5.0))).hex() == "00006064"
    # weights whose leaky quantization (constriction's perfect=False) differs from the perfect one ("d6e90494")
    assert entropy.encode_indices([0, 1, 0, 2, 0, 0], entropy.CategoricalModel((0.7, 0.2, 0.1))).hex() == "16e80494"


def test_models_normalize_their_fields_and_stay_frozen_and_uint64_indices_work():
    uniform = entropy.UniformModel(np.int64(5))
    assert type(uniform.num_symbols) is int and uniform == entropy.UniformModel(5)
    for model in (uniform, entropy.CategoricalModel((1.0, 3.0)), entropy.PlanAlphabetModel()):
        with pytest.raises(dataclasses.FrozenInstanceError):
            model.extra = 1
    assert round_trip(np.array([3, 0, 4], np.uint64), uniform)
    # ideal bits normalize the weights: -log2(3/4) - log2(1/4)
    assert entropy.ideal_bits([1, 0], entropy.CategoricalModel((1.0, 3.0))) == pytest.approx(2.0 - np.log2(3.0) + 2.0)
