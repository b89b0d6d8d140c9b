"""The file format: exact round trips of headers, precise errors, and fuzzing.

Whatever bytes ``decompress`` gets, it returns the item the file was written for or raises
FormatError -- never another exception, never a hang, never a wrong reconstruction.
"""

import dataclasses
import struct
import zlib

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec import GaussianChannel

import jaxrec
from jaxrec import codec as jcodec
from jaxrec.codec import container
from jaxrec.codec.container import FORMAT_VERSION, MAGIC, Header
from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.entropy import CategoricalModel, PlanAlphabetModel, UniformModel, ZipfModel

CODEC = GaussianChannel(3)
X = jnp.array([[0.4, -1.1, 0.2], [0.3, 0.5, 0.25]])  # Q = N(loc, scale^2) against P = N(0, I)
CODER = jaxrec.pfr(chunk_size=64)


class Counts(GaussianChannel):
    """A lossless toy: items are counts in [0, 4)^3, Q centred on them, p(x | z) peaked at 2 z + 1.5
    with integer weights computed from ``z`` in numpy."""

    def target(self, x):
        return jaxrec.DiagGaussian((x - 1.5) / 2, 0.5 * jnp.ones(3))

    def likelihood(self, z):
        centre = 2 * np.asarray(z, np.float64)[:, None] + 1.5
        return 1 + np.rint(1000 * np.exp(-((np.arange(4) - centre) ** 2))).astype(np.int64)


@pytest.fixture(scope="module")
def small():
    """A real file (49 bytes: 45 of header and checksum, one 4-byte ANS word) and its decoding."""
    data = jaxrec.compress(CODEC, X, key=7, coder=CODER, item=3)
    return data, np.asarray(jaxrec.decompress(CODEC, data))


@pytest.fixture(scope="module")
def small_lossless():
    x = np.array([0, 3, 2])
    data = jaxrec.compress(Counts(3), x, key=7, coder=CODER)
    np.testing.assert_array_equal(jaxrec.decompress(Counts(3), data), x)
    return data, x


def _reframe(body: bytes) -> bytes:
    """``body`` (everything but the CRC) with a fresh, valid CRC32."""
    return body + struct.pack("<I", zlib.crc32(body))


# ------------------------------------------------------------------------------------------------
# Layout


def test_golden_file(small):
    """The bytes of a fixed file are pinned: the header layout, the key derivation, PFR's
    candidates and the entropy coder all feed into them. If this changes, stored files break:
    bump FORMAT_VERSION."""
    data, z = small
    assert data.hex() == GOLDEN_HEX, data.hex()
    np.testing.assert_allclose(z, GOLDEN_Z, rtol=1e-6)
    header, sections = container.read(data)
    assert header == Header(
        coder_name="pfr", coder_args=(64, 2**26), key_words=(0, 7), item=3, latent_size=3,
        latent_dtype="float32", num_blocks=1, plan_fingerprint=jaxrec.codec.blocks.single_block(3).fingerprint,
        data_shape=(2, 3), lossless=False, models=(ZipfModel(header.models[0].alpha),),
    )
    assert data[:4] == MAGIC and data[4] == FORMAT_VERSION and len(sections) == 1


GOLDEN_HEX = "894a5852010100037066720203800103808080400007030301a9af8e270202030101049a99993f010400c76d9dc1b300d6"
GOLDEN_Z = np.array([0.6601109504699707, -0.955707311630249, 0.15805745124816895])


header_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=8),
    st.tuples(st.integers(0, 9), st.floats(-1e6, 1e6)),
)
models = st.one_of(
    st.builds(ZipfModel, st.floats(1.001, 3.0)),
    st.builds(UniformModel, st.integers(1, 2**62)),
    st.builds(lambda p: CategoricalModel(tuple(p)), st.lists(st.floats(0.01, 10.0), min_size=1, max_size=5)),
    st.just(PlanAlphabetModel()),
)


@settings(max_examples=150, deadline=None)
@given(
    name=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12),
    args=st.lists(header_values, max_size=5),
    words=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    item=st.integers(0, 2**32 - 1),
    dims=st.integers(1, 10**9).flatmap(lambda d: st.tuples(st.just(d), st.integers(1, min(d, 10**6)))),
    fingerprint=st.integers(0, 2**32 - 1),
    shape=st.lists(st.integers(0, 10**6), max_size=4),
    lossless=st.booleans(),
    header_models=st.lists(models, max_size=3),
    sections=st.lists(st.binary(max_size=40), min_size=2, max_size=2),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_header_round_trip(name, args, words, item, dims, fingerprint, shape, lossless, header_models, sections, dtype):
    header = Header(
        coder_name=name, coder_args=tuple(args), key_words=words, item=item, latent_size=dims[0],
        latent_dtype=dtype, num_blocks=dims[1], plan_fingerprint=fingerprint, data_shape=tuple(shape),
        lossless=lossless, models=tuple(header_models),
    )
    sections = tuple(sections[: 1 + lossless])
    data = container.write(header, sections)
    assert container.read(data) == (header, sections)
    assert len(data) == len(container.write(header, (b"",) * len(sections))) + sum(map(len, sections))


def test_write_rejects_bad_headers(small):
    header, sections = container.read(small[0])
    bad = {
        "coder_name": ("x" * 65, "longer"), "key_words": ((1, 2**32), "key word"), "item": (-1, "item"),
        "latent_dtype": ("bfloat16", "latent_dtype"), "num_blocks": (4, "num_blocks"),
        "coder_args": (([1],), "header values"), "models": (("zipf",), "entropy model"),
    }
    for field, (value, message) in bad.items():
        with pytest.raises(InvalidArgumentError, match=message):
            container.write(dataclasses.replace(header, **{field: value}), sections)
    with pytest.raises(InvalidArgumentError, match="sections"):
        container.write(header, sections * 2)


# ------------------------------------------------------------------------------------------------
# Precise errors


def test_each_defect_is_named(small):
    data, _ = small
    body = data[:-4]
    cases = {
        b"": "truncated",
        MAGIC[:2]: "truncated",
        b"PK\x03\x04" + data[4:]: "bad magic",
        data[:4] + bytes([FORMAT_VERSION + 1]) + data[5:]: "unknown format version",
        data[:-1]: "checksum|truncated",
        data[:20]: "truncated",
        data + b"\0": "trailing",
        data[:-5] + bytes([data[-5] ^ 1]) + data[-4:]: "checksum",
        _reframe(body[:5] + b"\x09" + body[6:]): "unknown PRNG",
        _reframe(body[:6] + b"\x80" + body[7:]): "unknown flags",
        _reframe(body[:6] + b"\x02" + body[7:]): "payload sections",  # claims lossless, has one section
    }
    for bad, message in cases.items():
        with pytest.raises(FormatError, match=message):
            jaxrec.decompress(CODEC, bad)
    with pytest.raises(InvalidArgumentError, match="bytes"):
        container.read("not bytes")


def _forge(data: bytes, **changes) -> bytes:
    header, sections = container.read(data)
    return container.write(dataclasses.replace(header, **changes), sections)


def test_inconsistent_but_well_formed_headers(small):
    data, _ = small
    cases = {
        _forge(data, coder_name="gprs9"): "unknown coder",
        _forge(data, coder_args=(64,)): "takes 2 parameters",
        _forge(data, coder_args=(0, 2**26)): "coder parameters are invalid",
        _forge(data, latent_size=4): "dimensions",
        _forge(data, plan_fingerprint=1): "another block plan",
        _forge(data, models=(UniformModel(2),) * 2): "sends 1 symbols",
        _forge(data, latent_dtype="float64"): "float64",
        _forge(data, models=(UniformModel(2),)): "corrupt",  # the payload is Zipf-coded
    }
    for bad, message in cases.items():
        with pytest.raises(FormatError, match=message):
            jaxrec.decompress(CODEC, bad)
    # the header carries the entropy models' parameters; invalid ones are refused at parse time
    zipf_at = data.index(struct.pack("<f", container.read(data)[0].models[0].alpha))
    forged = _reframe(data[:zipf_at] + struct.pack("<f", 0.5) + data[zipf_at + 4 : -4])
    with pytest.raises(FormatError, match="invalid ZipfModel"):
        container.read(forged)


# ------------------------------------------------------------------------------------------------
# Fuzzing


def _decodes_or_format_error(data: bytes, reference: np.ndarray | None, codec=CODEC) -> None:
    """decompress(data) must raise FormatError, or (``reference`` given) return exactly it."""
    try:
        out = np.asarray(jaxrec.decompress(codec, data))
    except FormatError:
        return
    assert reference is not None, "corrupt bytes decoded without an error"
    np.testing.assert_array_equal(out, reference)


def test_every_truncation_and_every_bit_flip(small):
    data, _ = small
    for n in range(len(data)):
        with pytest.raises(FormatError):
            jaxrec.decompress(CODEC, data[:n])
    for bit in range(8 * len(data)):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(FormatError):
            jaxrec.decompress(CODEC, bytes(flipped))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes(blob):
    _decodes_or_format_error(blob, None)
    _decodes_or_format_error(MAGIC + bytes([FORMAT_VERSION]) + blob, None)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4), cut=st.integers(0, 60))
def test_random_corruptions_are_detected(small, edits, cut):
    """Byte overwrites and truncations keep the CRC: decoding fails or, when the edit changed
    nothing, gives the original item -- never a different one."""
    data, reference = small
    corrupt = bytearray(data)
    for pos, value in edits:
        corrupt[pos % len(data)] = value
    _decodes_or_format_error(bytes(corrupt), reference if bytes(corrupt) == data else None)
    _decodes_or_format_error(bytes(corrupt[: len(data) - 1 - cut % len(data)]), None)


@settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3),
       insert=st.binary(max_size=3), at=st.integers(0, 10**6))
def test_forged_checksums_still_fail_safely(small, edits, insert, at):
    """Corruptions behind a recomputed CRC (the checksum cannot help): the parser and the decoder
    must still raise only FormatError, allocate in proportion to the input and finish quickly; a
    forged file that parses may decode to something else (e.g. a changed key word) -- that is what
    the checksum is for."""
    data, _ = small
    body = bytearray(data[:-4])
    for pos, value in edits:
        body[pos % len(body)] = value
    pos = at % (len(body) + 1)
    body[pos:pos] = insert
    try:
        out = np.asarray(jaxrec.decompress(CODEC, _reframe(bytes(body))))
    except FormatError:
        return
    assert out.shape == (3,) and np.isfinite(out).all()


def test_describe_reports_header_and_rate(small):
    data, _ = small
    info = jcodec.describe(data)
    header, sections = container.read(data)
    assert info["coder"] == "pfr" and info["coder_params"] == {"chunk_size": 64, "max_steps": 2**26}
    assert info["key_words"] == [0, 7] and info["item"] == 3 and info["num_blocks"] == 1
    assert info["bytes"] == len(data) == info["header_bytes"] + info["payload_bytes"]
    assert info["payload_bytes"] == len(sections[0]) == 4
    index = jaxrec.entropy.decode_streams(sections[0], [(header.models[0], 1)])[0]
    assert info["index_ideal_bits"] == pytest.approx(jaxrec.entropy.ideal_bits(index, header.models[0]))
    assert info["index_ideal_bits"] <= 8 * info["payload_bytes"]


@settings(max_examples=200, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3), forge=st.booleans())
def test_lossless_file_fuzz(small_lossless, edits, forge):
    """The data section too: with the CRC intact corruption is always caught; behind a forged CRC
    the decoder still raises only FormatError (the data section must re-encode to itself)."""
    data, x = small_lossless
    body = bytearray(data[:-4] if forge else data)
    for pos, value in edits:
        body[pos % len(body)] = value
    corrupt = _reframe(bytes(body)) if forge else bytes(body)
    if not forge:
        _decodes_or_format_error(corrupt, x if corrupt == data else None, Counts(3))
        return
    try:
        out = np.asarray(jaxrec.decompress(Counts(3), corrupt))
    except FormatError:
        return
    assert out.shape == (3,) and ((out >= 0) & (out < 4)).all()
