"""The file format (version 2): exact round trips of headers, precise errors, and fuzzing.

Whatever bytes ``decompress`` gets, it returns the items the archive was written for or raises
FormatError -- never another exception, never a hang, never an allocation sized by an unchecked
header value, never a wrong reconstruction while the checksum holds.
"""

import dataclasses
import re
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
from jaxrec.codec.container import (
    FORMAT_VERSION,
    ITEM_DTYPES,
    MAGIC,
    MAX_CHUNK_ITEMS,
    Header,
)
from jaxrec.coders import registry
from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.entropy import CategoricalModel, PlanAlphabetModel, UniformModel, ZipfModel

CODEC = GaussianChannel(3)
X = jnp.array([[0.4, -1.1, 0.2], [0.3, 0.5, 0.25]])  # Q = N(loc, scale^2) against P = N(0, I)
CODER = jaxrec.pfr(chunk_size=64)
# six items in three chunks of two; no plan budget, so the items' own KLs give several model groups
ITEMS = jnp.stack([X, X * 0.5, X * 1.2, X * 0.3, X * -0.8, X * 0.9]).at[:, 1].set(X[1])


class Counts(GaussianChannel):
    """A lossless toy: items are counts in [0, 4)^3, Q centred on them, p(x | z) peaked at 2 z + 1.5
    with integer weights computed from ``z`` in numpy."""

    def target(self, x):
        return jaxrec.DiagGaussian((x - 1.5) / 2, 0.5 * jnp.ones(3))

    def likelihood(self, z):
        centre = 2 * np.asarray(z, np.float64)[:, None] + 1.5
        return 1 + np.rint(1000 * np.exp(-((np.arange(4) - centre) ** 2))).astype(np.int64)


COUNTS = np.array([[0, 3, 2], [1, 1, 2], [3, 0, 0], [2, 2, 1], [0, 0, 3]], np.uint8)


@pytest.fixture(scope="module")
def small():
    """A real one-item file and its decoding."""
    data = jaxrec.compress(CODEC, X, key=7, coder=CODER, item=3)
    return data, np.asarray(jaxrec.decompress(CODEC, data))


@pytest.fixture(scope="module")
def archive():
    """A lossy archive of six items in three chunks with several groups of entropy models."""
    data = jaxrec.compress_batch(CODEC, ITEMS, key=5, coder=CODER, chunk_items=2)
    assert len(container.read(data).header.groups) > 1
    return data, np.asarray(jaxrec.decompress_batch(CODEC, data))


@pytest.fixture(scope="module")
def lossless():
    data = jaxrec.compress_batch(Counts(3), COUNTS, key=7, coder=CODER, chunk_items=2)
    np.testing.assert_array_equal(jaxrec.decompress_batch(Counts(3), data), COUNTS)
    return data, COUNTS


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
    archive = container.read(data)
    header = archive.header
    assert header == Header(
        coder_name="pfr", coder_args=(64, 2**26), key_words=(0, 7), first_item=3, latent_size=3,
        latent_dtype="float32", num_blocks=1, plan_fingerprint=jaxrec.codec.blocks.single_block(3).fingerprint,
        item_shape=(2, 3), item_dtype="float32", lossless=False, num_items=1, chunk_items=1,
        groups=((ZipfModel(header.groups[0][0].alpha),),), group_counts=(1,),
    )
    assert data[:4] == MAGIC and data[4] == FORMAT_VERSION
    assert archive.header_bytes + archive.table_bytes + archive.payload_bytes + 4 == len(data)


GOLDEN_HEX = "894a585205010000037066720203800103808080400007030301a9af8e270202030b0101010101049a99993f010034e582eb11acb7"
GOLDEN_Z = np.array([0.35604092478752136, -0.22560922801494598, 0.06967423856258392])


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


@st.composite
def layouts(draw):
    """Item count, chunk size, group counts and stream lengths (in words) of an archive."""
    num_items = draw(st.integers(1, 40))
    chunk = draw(st.integers(1, 45))
    groups = draw(st.integers(1, min(3, num_items)))
    cuts = []
    if groups > 1:
        cuts = sorted(draw(st.lists(st.integers(1, num_items - 1), min_size=groups - 1, max_size=groups - 1, unique=True)))
    counts = tuple(b - a for a, b in zip([0, *cuts], [*cuts, num_items]))
    return num_items, chunk, counts


@settings(max_examples=120, deadline=None)
@given(
    name=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12),
    model=st.text(max_size=20),
    args=st.lists(header_values, max_size=5),
    words=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    first=st.integers(0, 2**32 - 41),
    dims=st.integers(1, 10**9).flatmap(lambda d: st.tuples(st.just(d), st.integers(1, min(d, 10**6)))),
    fingerprint=st.integers(0, 2**32 - 1),
    shape=st.lists(st.integers(0, 10**6), max_size=4),
    dtype=st.sampled_from(ITEM_DTYPES),
    lossless=st.booleans(),
    layout=layouts(),
    group_models=st.lists(models, max_size=3),
    latent_dtype=st.sampled_from(["float32", "float64"]),
    words_per_stream=st.integers(0, 3),
    snap=st.booleans(),
)
def test_header_round_trip(name, model, args, words, first, dims, fingerprint, shape, dtype, lossless, layout,
                           group_models, latent_dtype, words_per_stream, snap):
    num_items, chunk, counts = layout
    header = Header(
        coder_name=name, coder_args=tuple(args), key_words=words, first_item=first, latent_size=dims[0],
        latent_dtype=latent_dtype, num_blocks=dims[1], plan_fingerprint=fingerprint, item_shape=tuple(shape),
        item_dtype=dtype, lossless=lossless, num_items=num_items, chunk_items=chunk,
        groups=(tuple(group_models),) * len(counts), group_counts=counts, model=model, snap_marks=snap and lossless,
    )
    stream = bytes(range(4 * words_per_stream))
    group_stream = stream if len(counts) > 1 else b""
    chunks = [(stream, stream if lossless else b"")] * header.num_chunks
    data = container.write(header, group_stream, chunks)
    archive = container.read(data)
    assert archive.header == header
    assert archive.group_stream == group_stream
    assert [(archive.index_stream(c), archive.data_stream(c)) for c in range(header.num_chunks)] == chunks


def test_write_rejects_bad_headers(small):
    header = container.read(small[0]).header
    bad = {
        "coder_name": ("x" * 65, "longer"), "key_words": ((1, 2**32), "key word"), "first_item": (-1, "first_item"),
        "latent_dtype": ("bfloat16", "latent_dtype"), "num_blocks": (4, "num_blocks"),
        "coder_args": (([1],), "header values"), "groups": ((("zipf",),), "entropy model"),
        "item_dtype": ("complex64", "item_dtype"), "chunk_items": (MAX_CHUNK_ITEMS + 1, "chunk_items"),
        "num_items": (0, "num_items"), "model": ("m" * 257, "longer"), "group_counts": ((2,), "counts"),
    }
    for field, (value, message) in bad.items():
        with pytest.raises(InvalidArgumentError, match=message):
            container.write(dataclasses.replace(header, **{field: value}), b"", [(b"\0" * 4, b"")])
    with pytest.raises(InvalidArgumentError, match="chunks"):
        container.write(header, b"", [(b"", b"")] * 2)
    with pytest.raises(InvalidArgumentError, match="32-bit words"):
        container.write(header, b"", [(b"\0" * 3, b"")])
    with pytest.raises(InvalidArgumentError, match="lossy"):
        container.write(header, b"", [(b"", b"\0" * 4)])


# ------------------------------------------------------------------------------------------------
# Precise errors


def test_each_defect_is_named(small):
    data, _ = small
    body = data[:-4]
    version_1 = data[:4] + b"\x01" + data[5:]
    cases = {
        b"": "truncated",
        MAGIC[:2]: "truncated",
        b"PK\x03\x04" + data[4:]: "bad magic",
        version_1: "version-1 jaxrec file.*jaxrec 0.1",
        data[:4] + bytes([FORMAT_VERSION + 1]) + data[5:]: "unknown format version",
        data[:-1]: "checksum|truncated",
        data[:20]: "truncated",
        data + b"\0": "trailing",
        data[:-5] + bytes([data[-5] ^ 1]) + data[-4:]: "checksum",
        _reframe(body[:5] + b"\x09" + body[6:]): "unknown PRNG",
        _reframe(body[:6] + b"\x80" + body[7:]): "unknown flags",
        _reframe(body[:6] + b"\x02" + body[7:]): "truncated",  # claims lossless: a data stream length is missing
    }
    for bad, message in cases.items():
        with pytest.raises(FormatError, match=message):
            jaxrec.decompress(CODEC, bad)
    with pytest.raises(InvalidArgumentError, match="bytes"):
        container.read("not bytes")


def _forge(data: bytes, **changes) -> bytes:
    archive = container.read(data)
    chunks = [(archive.index_stream(c), archive.data_stream(c)) for c in range(archive.header.num_chunks)]
    return container.write(dataclasses.replace(archive.header, **changes), archive.group_stream, chunks)


def test_inconsistent_but_well_formed_headers(small):
    data, _ = small
    zipf = container.read(data).header.groups[0][0]
    cases = {
        _forge(data, coder_name="gprs9"): "unknown coder",
        _forge(data, coder_args=(64,)): "takes 2 parameters",
        _forge(data, coder_args=(0, 2**26)): "coder parameters are invalid",
        _forge(data, latent_size=4): "dimensions",
        _forge(data, plan_fingerprint=1): "another block plan",
        _forge(data, groups=((zipf, zipf),)): "sends 1 symbols",
        _forge(data, latent_dtype="float64"): "float64",
        _forge(data, groups=((UniformModel(2),),)): "corrupt",  # the payload is Zipf-coded
        _forge(data, coder_name="sp_orc", coder_args=(32, 32), groups=((PlanAlphabetModel(), UniformModel(32)),)): "partitions",
    }
    for bad, message in cases.items():
        with pytest.raises(FormatError, match=message):
            jaxrec.decompress(CODEC, bad)
    # the header carries the entropy models' parameters; invalid ones are refused at parse time
    zipf_at = data.index(struct.pack("<f", zipf.alpha))
    forged = _reframe(data[:zipf_at] + struct.pack("<f", 0.5) + data[zipf_at + 4 : -4])
    with pytest.raises(FormatError, match="invalid ZipfModel"):
        container.read(forged)


def test_header_values_cannot_drive_allocations(small):
    """Item and chunk counts are bounded before anything is allocated: a chunk count beyond the
    bytes that remain is truncation, a chunk size beyond MAX_CHUNK_ITEMS is out of range."""
    data, _ = small
    archive = container.read(data)
    two = container.write(dataclasses.replace(archive.header, num_items=2, group_counts=(2,)), b"",
                          [(archive.index_stream(0), b"")] * 2)
    at = next(i for i, (a, b) in enumerate(zip(data, two)) if a != b)  # where num_items is
    body = data[:-4]
    assert body[at : at + 2] == b"\x01\x01"  # num_items = chunk_items = 1
    many = _reframe(body[:at] + container._varint(2**32 - 4) + b"\x01" + body[at + 2 :])
    with pytest.raises(FormatError, match="item table of 4294967292 chunks does not fit"):
        container.read(many)
    huge = _reframe(body[:at] + b"\x01" + container._varint(MAX_CHUNK_ITEMS + 1) + body[at + 2 :])
    with pytest.raises(FormatError, match="chunk items"):
        container.read(huge)


# ------------------------------------------------------------------------------------------------
# Fuzzing


def _decodes_or_format_error(data: bytes, reference: np.ndarray | None, codec=CODEC) -> None:
    """decompress_batch(data) must raise FormatError, or (``reference`` given) return exactly it."""
    try:
        out = np.asarray(jaxrec.decompress_batch(codec, data))
    except FormatError:
        return
    assert reference is not None, "corrupt bytes decoded without an error"
    np.testing.assert_array_equal(out, reference)


@pytest.mark.parametrize("name", [  # the six-item archive: 3.8 s cold, slow (the other two stay fast)
    "small", pytest.param("archive", marks=[pytest.mark.slow, pytest.mark.mutation]), "lossless",
])
def test_every_truncation_and_every_bit_flip(name, request):
    data, _ = request.getfixturevalue(name)
    codec = Counts(3) if name == "lossless" else CODEC
    for n in range(len(data)):
        with pytest.raises(FormatError):
            jaxrec.decompress_batch(codec, data[:n])
    for bit in range(8 * len(data)):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(FormatError):
            jaxrec.decompress_batch(codec, bytes(flipped))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes(blob):
    _decodes_or_format_error(blob, None)
    _decodes_or_format_error(MAGIC + bytes([FORMAT_VERSION]) + blob, None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4), cut=st.integers(0, 60))
def test_random_corruptions_are_detected(archive, edits, cut):
    """Byte overwrites and truncations keep the CRC: decoding fails or, when the edit changed
    nothing, gives the original items -- never different ones."""
    data, reference = archive
    corrupt = bytearray(data)
    for pos, value in edits:
        corrupt[pos % len(data)] = value
    _decodes_or_format_error(bytes(corrupt), reference if bytes(corrupt) == data else None)
    _decodes_or_format_error(bytes(corrupt[: len(data) - 1 - cut % len(data)]), None)


def _forged_decodes_safely(data: bytes, codec, shape: tuple[int, ...], check) -> None:
    """Behind a recomputed CRC (the checksum cannot help) the decoder must raise FormatError or
    return items of the right shape (a forged archive that parses may decode to something else,
    e.g. after a changed key word: that is what the checksum is for)."""
    try:
        out = np.asarray(jaxrec.decompress_batch(codec, data))
    except FormatError:
        return
    assert out.shape[1:] == shape and check(out)


@settings(max_examples=200, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3),
       insert=st.binary(max_size=3), at=st.integers(0, 10**6))
def test_forged_checksums_still_fail_safely(archive, edits, insert, at):
    data, _ = archive
    body = bytearray(data[:-4])
    for pos, value in edits:
        body[pos % len(body)] = value
    pos = at % (len(body) + 1)
    body[pos:pos] = insert
    _forged_decodes_safely(_reframe(bytes(body)), CODEC, (3,), lambda out: np.isfinite(out).all())


def _respliced(data: bytes, lengths: list[int]) -> bytes:
    """The archive with its stream bytes cut at other lengths (in words), the item table rewritten
    to match and a fresh CRC: a spliced item table that is consistent with the file size."""
    archive = container.read(data)
    payload = data[archive.header_bytes + archive.table_bytes : -4]
    table = b"".join(container._varint(n) for n in lengths)
    return _reframe(data[: archive.header_bytes] + table + payload)


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shift=st.lists(st.integers(-2, 2), min_size=1, max_size=7), name=st.sampled_from(["archive", "lossless"]))
def test_spliced_item_tables_fail_safely(archive, lossless, shift, name):
    """Moving words between streams (chunk boundaries, index and data streams, the group stream)
    behind a valid table and CRC: FormatError or items of the right shape, never another error."""
    data, _ = archive if name == "archive" else lossless
    parsed = container.read(data)
    spans = ([parsed.group_span] if len(parsed.header.groups) > 1 else []) + [
        span for chunk in parsed.chunk_spans for span in (chunk if parsed.header.lossless else chunk[:1])
    ]
    lengths = [(end - start) // 4 for start, end in spans]
    for i, delta in enumerate(shift):  # move |delta| words from stream i to stream i + 1 (or back)
        a, b = i % (len(lengths) - 1), i % (len(lengths) - 1) + 1
        move = max(-lengths[b], min(lengths[a], delta))
        lengths[a] -= move
        lengths[b] += move
    spliced = _respliced(data, lengths)
    if name == "archive":
        _forged_decodes_safely(spliced, CODEC, (3,), lambda out: np.isfinite(out).all())
    else:
        _forged_decodes_safely(spliced, Counts(3), (3,), lambda out: ((out >= 0) & (out < 4)).all())


def test_swapped_chunks_decode_other_items_or_fail(archive):
    """Two chunks swapped behind a rewritten table and CRC: the streams are valid, so the items
    decode -- under the other chunk's keys (which is why the checksum covers everything)."""
    data, _ = archive
    parsed = container.read(data)
    chunks = [parsed.index_stream(c) for c in range(3)]
    swapped = container.write(parsed.header, parsed.group_stream, [(chunks[1], b""), (chunks[0], b""), (chunks[2], b"")])
    _forged_decodes_safely(swapped, CODEC, (3,), lambda out: np.isfinite(out).all())


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3), forge=st.booleans())
def test_lossless_archive_fuzz(lossless, edits, forge):
    """The data streams too: with the CRC intact corruption is always caught; behind a forged CRC
    the decoder still raises only FormatError or returns counts in range."""
    data, x = lossless
    body = bytearray(data[:-4] if forge else data)
    for pos, value in edits:
        body[pos % len(body)] = value
    corrupt = _reframe(bytes(body)) if forge else bytes(body)
    if not forge:
        _decodes_or_format_error(corrupt, x if corrupt == data else None, Counts(3))
        return
    _forged_decodes_safely(corrupt, Counts(3), (3,), lambda out: ((out >= 0) & (out < 4)).all())


def test_describe_reports_header_and_rate(archive):
    data, _ = archive
    info = jcodec.describe(data)
    header = container.read(data).header
    assert info["coder"] == "pfr" and info["coder_params"] == {"chunk_size": 64, "max_steps": 2**26}
    assert info["key_words"] == [0, 5] and info["first_item"] == 0 and info["num_blocks"] == 1
    assert info["num_items"] == 6 and info["chunk_items"] == 2 and info["num_chunks"] == 3
    assert info["group_counts"] == list(header.group_counts) and len(info["entropy_models"]) == len(header.groups)
    assert info["bytes"] == len(data) == info["header_bytes"] + info["table_bytes"] + info["payload_bytes"] + 4
    assert info["item_shape"] == [2, 3] and info["item_dtype"] == "float32" and not info["lossless"]
    report = jcodec.compress_report(CODEC, ITEMS, key=5, coder=CODER, chunk_items=2)
    assert report.archive == data
    assert info["index_ideal_bits"] == pytest.approx(report.ideal_bits, rel=1e-9)
    assert info["index_ideal_bits"] <= 8 * info["payload_bytes"]


# ------------------------------------------------------------------------------------------------
# The layout written out by hand (no coder, no compilation: the container alone)


def _leb(n: int) -> bytes:
    """Unsigned LEB128, written out from its definition."""
    out = b""
    while n >= 0x80:
        out += bytes([0x80 | (n & 0x7F)])
        n >>= 7
    return out + bytes([n])


VALUE_BYTES = [  # (value, its typed encoding from the format's docstring)
    (None, b"\x00"), (False, b"\x01"), (True, b"\x02"), (np.bool_(True), b"\x02"),
    (0, b"\x03\x00"), (-1, b"\x03\x01"), (1, b"\x03\x02"), (-64, b"\x03\x7f"), (64, b"\x03\x80\x01"),
    (np.int64(-3), b"\x03\x05"), (2**63 - 1, b"\x03" + _leb(2**64 - 2)), (-(2**63), b"\x03" + _leb(2**64 - 1)),
    (1.5, b"\x04" + struct.pack("<f", 1.5)), (np.float32(-0.25), b"\x04" + struct.pack("<f", -0.25)),
    (0.1, b"\x05" + struct.pack("<d", 0.1)), (1e39, b"\x05" + struct.pack("<d", 1e39)),
    (float("inf"), b"\x04" + struct.pack("<f", float("inf"))), (float("nan"), b"\x04" + struct.pack("<f", float("nan"))),
    ("", b"\x06\x00"), ("é", b"\x06\x02\xc3\xa9"), ((), b"\x07\x00"),
    ((1, (2.5, "x")), b"\x07\x02\x03\x02\x07\x02\x04" + struct.pack("<f", 2.5) + b"\x06\x01x"),
]


def test_typed_values_have_the_documented_bytes_and_read_back():
    """Each typed value (tag, zigzag varint, float32 when exact, else float64, UTF-8 strings,
    tuples nested at most twice) has the bytes the format's docstring gives; the reader returns the
    value and consumes exactly those bytes; values outside the format are refused on both sides."""
    for value, raw in VALUE_BYTES:
        assert container._value(value) == raw, value
        reader = container._Reader(raw + b"\xff", 0, len(raw))
        got = reader.value("v")
        assert reader.left == 0, value
        if isinstance(value, float) and np.isnan(value):
            assert np.isnan(got)
        else:
            assert got == value and type(got) is type(value if not isinstance(value, np.generic) else value.item())
    assert container._value("x" * 2**16)[:4] == b"\x06" + _leb(2**16)
    for bad, message in [(2**63, "does not fit in 64 bits"), (-(2**63) - 1, "does not fit in 64 bits"),
                         ("x" * (2**16 + 1), "string parameter is longer than 65536 bytes"), ((((),),), "nested at most 2"),
                         ([1], "header values"), (b"x", "header values")]:
        with pytest.raises(InvalidArgumentError, match=message):
            container._value(bad)
    for raw, message in [(b"\x08", "unknown value tag 8"), (b"\x07\x01\x07\x01\x07\x00", "unknown value tag 7"),
                         (b"\x04\x00\x00", "needs 4 bytes, 2 left"), (b"\x05" + bytes(7), "needs 8 bytes, 7 left"),
                         (b"\x06\x03ab", "needs 3 bytes, 2 left"), (b"\x06\x02\xff\xfe", "not valid UTF-8"),
                         (b"\x06" + _leb(2**16 + 1), "out of range"), (b"\x03" + b"\x80" * 10, "longer than 10 bytes"),
                         (b"\x07\x04\x00\x00", "out of range"), (b"", "needs 1 bytes, 0 left")]:
        with pytest.raises(FormatError, match=message):
            container._Reader(raw, 0, len(raw)).value("v")
    reader = container._Reader(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 0, 10)
    assert reader.varint("v") == 2**64 - 1 and reader.left == 0
    with pytest.raises(FormatError, match="out of range"):
        container._Reader(b"\x80\x01", 0, 2).varint("v", 128)
    assert container._Reader(b"\xff\x00", 0, 2).varint("v", 128) == 127


def _header(**changes) -> Header:
    """A header that uses every field: two groups of all four model kinds, lossless with snap marks,
    float64, multi-byte varints, a bfloat16 item of three axes."""
    models = (ZipfModel(1.25), UniformModel(2**40), CategoricalModel((1.0, 3.0)), PlanAlphabetModel())
    header = Header(
        coder_name="gprs_bnb", coder_args=("sample", 64, None, 0.1), key_words=(0xFFFFFFFF, 1), first_item=300,
        latent_size=300, latent_dtype="float64", num_blocks=2, plan_fingerprint=0xDEADBEEF, item_shape=(2, 0, 130),
        item_dtype="bfloat16", lossless=True, num_items=5, chunk_items=2, groups=(models, models[::-1]),
        group_counts=(2, 3), model="toy crc32=0", snap_marks=True,
    )
    changes.setdefault("snap_marks", changes.get("lossless", True))  # a lossy variant has no marks
    return dataclasses.replace(header, **changes)


def _streams(header: Header, words: int = 1) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    group = b"G" * 4 * words if len(header.groups) > 1 else b""
    chunks = [(bytes([65 + c]) * 4 * (c + words), (bytes([97 + c]) * 4 * c if header.lossless else b""))
              for c in range(header.num_chunks)]
    return group, chunks


def test_written_header_has_the_documented_layout():
    """The bytes of a header that uses every field, built from the layout in the module's
    docstring (magic, version, prng, flags, model, coder, args, key, first item, D, B, plan, shape,
    dtype, N, C, groups of models, group counts, item table, payload, CRC32), and the parsed spans."""
    header = _header()
    group, chunks = _streams(header)
    data = container.write(header, group, chunks)
    models = (b"\x01\x04" + struct.pack("<f", 1.25) + b"\x02\x03" + _leb(2**41) + b"\x03\x07\x02\x04"
              + struct.pack("<f", 1.0) + b"\x04" + struct.pack("<f", 3.0) + b"\x04")
    reversed_models = (b"\x04\x03\x07\x02\x04" + struct.pack("<f", 1.0) + b"\x04" + struct.pack("<f", 3.0)
                       + b"\x02\x03" + _leb(2**41) + b"\x01\x04" + struct.pack("<f", 1.25))
    head = (MAGIC + bytes([5, 1, 0b111]) + b"\x0btoy crc32=0" + b"\x08gprs_bnb"
            + b"\x04" + b"\x06\x06sample" + b"\x03\x80\x01" + b"\x00" + b"\x05" + struct.pack("<d", 0.1)
            + _leb(0xFFFFFFFF) + b"\x01" + _leb(300) + _leb(300) + b"\x02" + struct.pack("<I", 0xDEADBEEF)
            + b"\x03\x02\x00" + _leb(130) + bytes([ITEM_DTYPES.index("bfloat16")]) + b"\x05\x02"
            + b"\x02" + b"\x04" + models + b"\x04" + reversed_models + b"\x02\x03")
    table = b"\x01" + b"\x01\x00" + b"\x02\x01" + b"\x03\x02"
    payload = group + b"".join(index + extra for index, extra in chunks)
    assert data == head + table + payload + struct.pack("<I", zlib.crc32(head + table + payload))
    archive = container.read(data)
    assert archive.header == header
    assert (archive.header_bytes, archive.table_bytes, archive.payload_bytes) == (len(head), len(table), len(payload))
    start = len(head) + len(table)
    assert archive.group_span == (start, start + 4)
    assert archive.chunk_spans == ((((start + 4, start + 8), (start + 8, start + 8))),
                                   ((start + 8, start + 16), (start + 16, start + 20)),
                                   ((start + 20, start + 32), (start + 32, start + 40)))
    assert [archive.index_stream(c) for c in range(3)] == [index for index, _ in chunks]
    assert [archive.data_stream(c) for c in range(3)] == [extra for _, extra in chunks]
    assert header.num_chunks == 3 and [header.chunk_of(i) for i in range(5)] == [0, 0, 1, 1, 2]
    assert [list(header.chunk_range(c)) for c in range(3)] == [[0, 1], [2, 3], [4]]
    # one group, lossy, float32: no group counts, no group stream length, no data stream lengths
    one = _header(groups=(_header().groups[0],), group_counts=(5,), lossless=False, latent_dtype="float32", snap_marks=False)
    group, chunks = _streams(one)
    data = container.write(one, group, chunks)
    assert data[6] == 0 and container.read(data).header == one
    table = b"\x01\x02\x03"
    assert data[-4 - 24 - len(table) : -4 - 24] == table and container.read(data).group_span[0] == container.read(data).group_span[1]


def test_write_accepts_every_limit_and_refuses_one_past_it():
    """Each bound of the header check, at the bound (written and read back) and one past it
    (refused by name); then headers that skip the check (written anyway) are refused by ``read``."""
    good = [
        {"item_shape": (1,) * 32}, {"item_shape": ()}, {"num_blocks": 300}, {"num_blocks": 1},
        {"chunk_items": MAX_CHUNK_ITEMS}, {"first_item": 2**32 - 5}, {"key_words": (0, 2**32 - 1)},
        {"plan_fingerprint": 2**32 - 1}, {"coder_name": "x" * 64, "model": "é" * 128}, {"item_shape": (np.int64(3),)},
        {"coder_args": (True, np.float64(0.5), np.int32(-7))}, {"num_items": 5, "chunk_items": 5},
    ]
    for changes in good:
        header = _header(**changes)
        group, chunks = _streams(header)
        assert container.read(container.write(header, group, chunks)).header == header, changes
    bad = [
        ({"item_shape": (1,) * 33}, "more than 32 axes"), ({"num_blocks": 301}, "num_blocks"),
        ({"num_blocks": 0}, "num_blocks"), ({"chunk_items": 0}, "chunk_items"),
        ({"first_item": 2**32 - 4}, "first_item \\+ num_items"), ({"first_item": 2**32}, "first_item must be an int"),
        ({"key_words": (1, 2, 3)}, "two uint32 words"), ({"key_words": (-1, 0)}, "key word"),
        ({"plan_fingerprint": 2**32}, "plan_fingerprint"), ({"latent_size": True}, "latent_size"),
        ({"coder_name": "x" * 65}, "longer than 64"), ({"model": "é" * 129}, "longer than 256"),
        ({"coder_name": 3}, "coder_name must be a str"), ({"item_shape": (-1,)}, "item_shape"),
        ({"item_shape": (2.0,)}, "item_shape"), ({"version": 2}, "format version 5, got 2"),
        ({"prng_impl": "philox"}, "PRNG implementation"), ({"groups": (), "group_counts": ()}, "one or more groups"),
        ({"group_counts": (2, 2)}, "sum to num_items"), ({"group_counts": (5,)}, "sum to num_items"),
        ({"group_counts": (6, -1)}, "every group must hold an item"), ({"num_items": 2**32 + 1}, "num_items"),
        ({"groups": ((ZipfModel(2.0),), ())}, "same number of models"), ({"latent_dtype": "float16"}, "latent_dtype"),
    ]
    for changes, message in bad:
        header = _header(**changes)
        group, chunks = _streams(_header())
        with pytest.raises(InvalidArgumentError, match=message):
            container.write(header, group, chunks)
    header = _header(groups=(_header().groups[0],), group_counts=(5,))
    with pytest.raises(InvalidArgumentError, match="several groups"):
        container.write(header, b"G" * 4, _streams(header)[1])
    with pytest.raises(InvalidArgumentError, match="32-bit words"):
        container.write(_header(), b"G" * 3, _streams(_header())[1])


def test_read_refuses_what_write_would_have_refused(monkeypatch):
    """Headers that pass the byte-level parse but not the semantic checks, written with the writer's
    own check switched off, behind a valid CRC: ``read`` raises FormatError naming the defect."""
    monkeypatch.setattr(container, "_check_header", lambda *args: None)
    cases = [
        ({"num_blocks": 301}, "num blocks <= latent size"), ({"num_blocks": 0}, "num blocks <= latent size"),
        ({"group_counts": (2, 2)}, "do not add up to 5"), ({"group_counts": (0, 5)}, "do not add up to 5"),
        ({"groups": ((ZipfModel(2.0),), ())}, "different numbers of entropy models"),
        ({"groups": (), "group_counts": ()}, "no group"), ({"chunk_items": 0, "num_items": 1}, "chunk items >= 1"),
        ({"num_items": 0, "group_counts": (0,), "groups": ((ZipfModel(2.0),),)}, "num items >= 1"),
        ({"item_shape": (1,) * 33}, "item ndim = 33 is out of range"),
        ({"first_item": 2**32 - 4}, "num items = 5 is out of range"),
        ({"latent_dtype": "float16", "lossless": False, "snap_marks": False}, None),
        ({"lossless": False, "snap_marks": True}, "the flags announce snap marks in a lossy archive"),
    ]
    for changes, message in cases:
        header = _header(**changes)
        group, chunks = _streams(header) if header.num_items and header.chunk_items else (b"", [])
        if changes == {"groups": (), "group_counts": ()}:
            group = b""
        data = container.write(header, group, chunks)
        if message is None:  # float16 is written as float32 (flags hold one bit)
            assert container.read(data).header.latent_dtype == "float32"
            continue
        with pytest.raises(FormatError, match=message):
            container.read(data)
    data = container.write(_header(), *_streams(_header()))
    at = data.index(b"\x03\x02\x00" + _leb(130)) + 5  # the item dtype byte
    for dtype_id, message in [(len(ITEM_DTYPES), "unknown item dtype 13"), (255, "unknown item dtype 255")]:
        with pytest.raises(FormatError, match=message):
            container.read(_reframe(data[:at] + bytes([dtype_id]) + data[at + 1 : -4]))
    assert container.read(_reframe(data[:at] + bytes([len(ITEM_DTYPES) - 1]) + data[at + 1 : -4])).header.item_dtype == "float64"
    kind_at = at + 1 + 2 + 1 + 1  # N, C, the group count, the first group's model count
    assert data[kind_at] == 1
    with pytest.raises(FormatError, match="unknown entropy model kind 5"):
        container.read(_reframe(data[:kind_at] + b"\x05" + data[kind_at + 1 : -4]))
    with pytest.raises(FormatError, match="unknown entropy model kind 0"):
        container.read(_reframe(data[:kind_at] + b"\x00" + data[kind_at + 1 : -4]))


def test_version_2_files_are_read_and_decoded_unless_their_coder_draws_other_points_since(small, monkeypatch):
    """Version 3 changed only the points of SP-PFR (float32: the within-bin quantile) and SP-ORC (any
    dtype: also its stream); the layout and every other candidate are version 2's. :func:`read`
    therefore reads every version-2 file (any coder, any dtype), and the decoder refuses one whose
    coder lists a newer ``oldest_format`` for the file's latent dtype, naming the coder, the dtype and
    the jaxrec that decodes it. The PFR file below decodes to the same item; under a registry entry
    that says float32 PFR codes decode from version 3 on, the same bytes are refused, and under one that
    says it only of float64 they are decoded."""
    data, z = small
    version_2 = _reframe(data[:4] + b"\x02" + data[5:-4])
    assert container.read(version_2).header == dataclasses.replace(container.read(data).header, version=2)
    np.testing.assert_array_equal(np.asarray(jaxrec.decompress(CODEC, version_2)), z)
    for name, args, dtype in [
        ("gprs_bnb", ("sample", 64, None, 0.1), "float32"), ("sp_pfr", (256, 2**20, 4096), "float32"),
        ("sp_orc", (1024, 128), "float64"), ("factorized", (("pfr", (64, 2**26)),), "float32"),
    ]:
        header = _header(coder_name=name, coder_args=args, latent_dtype=dtype, snap_marks=False)  # no marks before 4
        written = container.write(header, *_streams(header))
        assert container.read(_reframe(written[:4] + b"\x02" + written[5:-4])).header == dataclasses.replace(header, version=2)
    assert registry.LATENT_DTYPES == container.DTYPES  # the keys oldest_format may use are the file's dtypes
    assert registry.lookup("sp_pfr").oldest_format == {"float32": 3}
    assert registry.lookup("sp_orc").oldest_format == {"float32": 3, "float64": 3}
    assert all(registry.lookup(name).oldest_format is None for name in registry.REGISTRY if not name.startswith("sp_"))
    pfr_entry = registry.lookup("pfr")
    monkeypatch.setitem(registry.REGISTRY, "pfr", pfr_entry._replace(oldest_format={"float32": 3}))
    with pytest.raises(FormatError, match="version-2 jaxrec file \\(written by jaxrec 0.2\\) holds float32 'pfr' "
                                          "codes, which this jaxrec decodes from version 3 on.*decode it with jaxrec 0.2"):
        jaxrec.decompress(CODEC, version_2)
    np.testing.assert_array_equal(np.asarray(jaxrec.decompress(CODEC, data)), z)  # version 4: decoded
    monkeypatch.setitem(registry.REGISTRY, "pfr", pfr_entry._replace(oldest_format={"float64": 3}))
    np.testing.assert_array_equal(np.asarray(jaxrec.decompress(CODEC, version_2)), z)


def test_read_names_each_defect_of_a_hand_built_archive():
    """The framing checks on the hand-built archive (no coder involved): magic, version, PRNG id,
    flags, truncation at every length, trailing bytes, the checksum, the item table's bounds;
    bytearray and memoryview are read like bytes."""
    data = container.write(_header(), *_streams(_header()))
    body = data[:-4]
    assert container.read(bytearray(data)).header == container.read(memoryview(data)).header == _header()
    cases = {
        b"\x89J": "truncated: 2 bytes, not even the magic", b"\x89JXQ" + data[4:]: "bad magic",
        b"": "truncated: 0 bytes", MAGIC: "truncated: version needs 1 bytes, 0 left",
        data[:4] + b"\x01" + data[5:]: r"^this is a version-1 jaxrec file \(written by jaxrec 0\.1\); .*decode it with jaxrec 0\.1",
        data[:4] + b"\x06" + data[5:]: r"unknown format version 6 \(this jaxrec reads versions \(2, 3, 4, 5\)\)",
        data[:4] + b"\x00" + data[5:]: "unknown format version 0",
        _reframe(body[:5] + b"\x00" + body[6:]): "unknown PRNG id 0", _reframe(body[:5] + b"\x02" + body[6:]): "unknown PRNG id 2",
        _reframe(body[:6] + b"\x0f" + body[7:]): "unknown flags 0x0f", data + b"\0\0": "2 trailing bytes",
        _reframe(body[:4] + b"\x03" + body[5:]): "unknown flags 0x07",  # snap marks came with version 4
        data[:-4] + bytes([data[-4] ^ 0x80]) + data[-3:]: "checksum mismatch",
        data[:-9] + bytes([data[-9] ^ 1]) + data[-8:]: "checksum mismatch",
    }
    for bad, message in cases.items():
        with pytest.raises(FormatError, match=message):
            container.read(bad)
    for n in range(len(data)):
        with pytest.raises(FormatError, match="truncated|checksum|out of range"):
            container.read(data[:n])
    # Versions 2 to 4 have version 5's layout (2 -> 3: some coders' points; 3 -> 4: the snap marks in
    # some lossless data streams; 4 -> 5: SP-PFR's points and its added header parameter): read,
    # version kept. The jaxrec release of each version is part of the format (the decoder's messages name it).
    plain = container.write(_header(snap_marks=False), *_streams(_header()))
    for old in (2, 3):
        assert container.read(_reframe(plain[:4] + bytes([old]) + plain[5:-4])).header == _header(snap_marks=False, version=old)
    assert container.read(_reframe(body[:4] + b"\x04" + body[5:])).header == _header(version=4)
    assert container.READABLE_VERSIONS == (2, 3, 4, 5)
    assert container.WRITTEN_BY == {1: "0.1", 2: "0.2", 3: "0.3", 4: "0.4", 5: "0.5"}
    archive = container.read(data)
    at = archive.header_bytes  # the item table: the group stream's length first
    for words, message in [(b"\x7f", "a stream of 127 words is announced"), (b"\x02", "announces 189 bytes, got 185")]:
        with pytest.raises(FormatError, match=message):
            container.read(_reframe(body[:at] + words + body[at + 1 :]))


def test_item_dtypes_and_the_chunk_limit_are_fixed_by_the_format(monkeypatch):
    """The item dtype byte is a position in a fixed list of numpy names (changing the list breaks
    stored files), each name gives that numpy dtype; a chunk holds at most 2**16 items, on both sides."""
    names = ("bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
             "float16", "bfloat16", "float32", "float64")
    assert ITEM_DTYPES == names
    for position, name in enumerate(names):
        assert container.item_dtype(name).name == name
        header = _header(item_dtype=name)
        data = container.write(header, *_streams(header))
        assert data[data.index(b"\x03\x02\x00" + _leb(130)) + 5] == position
        assert container.read(data).header.item_dtype == name
    assert container.item_dtype("bfloat16") == np.dtype(jnp.bfloat16)
    assert MAX_CHUNK_ITEMS == 2**16
    header = _header(chunk_items=2**16)
    assert container.read(container.write(header, *_streams(header))).header.chunk_items == 2**16
    with pytest.raises(InvalidArgumentError, match="chunk_items must be in \\[1, 65536\\], got 65537"):
        container.write(_header(chunk_items=2**16 + 1), *_streams(_header()))
    monkeypatch.setattr(container, "_check_header", lambda *args: None)
    header = _header(chunk_items=2**16 + 1)
    with pytest.raises(FormatError, match="chunk items = 65537 is out of range"):
        container.read(container.write(header, *_streams(header)))


def test_headers_and_archives_are_frozen_and_the_optional_fields_default_to_none_recorded():
    """``Header`` and ``Archive`` are frozen (hashable, no field can be reassigned); a header built
    without ``model``, ``prng_impl``, ``version`` or ``snap_marks`` records no model (an empty string:
    one zero byte), threefry2x32, version 4 and no snap marks."""
    full = _header()
    header = Header(**{f.name: getattr(full, f.name) for f in dataclasses.fields(Header)
                       if f.name not in ("model", "prng_impl", "version", "snap_marks")})
    assert (header.model, header.prng_impl, header.version, header.snap_marks) == ("", "threefry2x32", 5, False)
    data = container.write(header, *_streams(header))
    assert data[4:8] == b"\x05\x01\x03\x00" and container.read(data).header == header
    archive = container.read(data)
    assert hash(header) == hash(container.read(data).header)
    with pytest.raises(dataclasses.FrozenInstanceError):
        header.num_items = 6
    with pytest.raises(dataclasses.FrozenInstanceError):
        archive.header_bytes = 0


def test_unsigned_header_fields_fit_the_64_bit_varints_read_accepts():
    """Sizes are written as varints that ``read`` accepts only below 2**64: the writer refuses
    2**64 (the file would be unreadable) and writes 2**64 - 1."""
    for field in ("latent_size", "item_shape"):
        value = (2**64 - 1,) if field == "item_shape" else 2**64 - 1
        header = _header(**{field: value})
        assert container.read(container.write(header, *_streams(header))).header == header
        with pytest.raises(InvalidArgumentError, match=f"{field} must be an int in \\[0, 18446744073709551616\\)"):
            container.write(_header(**{field: (2**64,) if field == "item_shape" else 2**64}), *_streams(header))


def test_the_largest_item_numbers_an_archive_can_hold():
    """Items are numbered below 2**32: an archive may hold 2**32 items from item 0 (65,536 full
    chunks), or one item numbered 2**32 - 1; one more is refused by name."""
    models = (ZipfModel(2.0),)
    header = _header(first_item=0, num_items=2**32, chunk_items=2**16, groups=(models,), group_counts=(2**32,),
                     lossless=False)
    data = container.write(header, b"", [(b"", b"")] * 2**16)
    assert container.read(data).header == header and len(container.read(data).chunk_spans) == 2**16
    last = _header(first_item=2**32 - 1, num_items=1, groups=(models,), group_counts=(1,), lossless=False)
    assert container.read(container.write(last, b"", [(b"", b"")])).header == last
    for changes in ({"first_item": 1, "num_items": 2**32}, {"first_item": 0, "num_items": 2**32 + 1}):
        bad = dataclasses.replace(header, group_counts=(changes["num_items"],), **changes)
        with pytest.raises(InvalidArgumentError, match="first_item \\+ num_items <= 2\\*\\*32|num_items must be"):
            container.write(bad, b"", [(b"", b"")] * 2**16)


def test_counts_are_bounded_by_the_bytes_left_without_refusing_valid_files():
    """``read`` bounds each count by the bytes that remain, at one byte per counted thing: a group
    of many plan-alphabet models (one byte each: a kind without fields; ``read`` assumed two and
    refused files that ``write`` had written) and many one-byte coder arguments read back; a count
    one past the bytes left, or a varint of 2**64, is refused."""
    header = _header(groups=((PlanAlphabetModel(),) * 80,), group_counts=(5,), coder_args=(None,) * 300,
                     model="", lossless=False)
    data = container.write(header, *_streams(header, 0))
    assert container.read(data).header == header
    with pytest.raises(FormatError, match="v = 18446744073709551616 is out of range"):
        container._Reader(b"\x80" * 9 + b"\x02", 0, 10).varint("v")
    assert container._Reader(b"\x04\x00\x00\x00", 0, 4).count("v") == 4  # the count's own byte is counted too
    with pytest.raises(FormatError, match="v = 5 is out of range \\(limit 5\\)"):
        container._Reader(b"\x05\x00\x00\x00", 0, 4).count("v")


def test_string_values_up_to_their_limit_read_back_and_a_bad_magic_is_quoted():
    """A string value of 2**16 bytes (the limit) is read back, a longer one is refused by
    ``read``; a file with a wrong magic number quotes exactly its first four bytes."""
    for text in ("x" * 2**16, "é" * 2**15):
        raw = container._value(text)
        assert container._Reader(raw, 0, len(raw)).value("v") == text
    raw = b"\x06" + _leb(2**16 + 1) + b"x" * (2**16 + 1)
    with pytest.raises(FormatError, match="v length = 65537 is out of range"):
        container._Reader(raw, 0, len(raw)).value("v")
    with pytest.raises(FormatError, match=r"^bad magic b'PK\\x03\\x04': not a jaxrec file \(expected b'\\x89JXR'\)$"):
        container.read(b"PK\x03\x04\x02\x01\x00")


def test_corrupt_tables_and_counts_are_named_precisely(monkeypatch):
    """Which check reports a corrupt header: trailing bytes counted exactly, a group item count
    past ``num_items`` (before the sum is checked), groups that leave no room for their item
    counts, a lossless item table with fewer bytes than its two lengths per chunk."""
    data = container.write(_header(), *_streams(_header()))
    with pytest.raises(FormatError, match="^2 trailing bytes after the checksum$"):
        container.read(data + b"\0\0")
    monkeypatch.setattr(container, "_check_header", lambda *args: None)
    header = _header(group_counts=(6, 0))
    with pytest.raises(FormatError, match="group item count = 6 is out of range \\(limit 6\\)"):
        container.read(container.write(header, *_streams(header)))
    header = _header(groups=((), (), ()), group_counts=(1, 2, 2))
    archive = container.read(container.write(header, *_streams(header)))
    body = archive.data[: archive.header_bytes - 3]  # the three empty groups, not their item counts
    assert body[-4:] == b"\x03\x00\x00\x00"
    with pytest.raises(FormatError, match="truncated: group item count needs 1 bytes, 0 left"):
        container.read(_reframe(body))
    archive = container.read(container.write(_header(), *_streams(_header())))
    body = archive.data[: archive.header_bytes + 3]  # 3 of the 7 table bytes (group stream, 3 x 2 streams)
    with pytest.raises(FormatError, match="the item table of 3 chunks does not fit in 3 bytes"):
        container.read(_reframe(body))


def test_every_header_field_named_when_the_writer_refuses_it():
    """``write`` names the field it refuses (the other unsigned fields are refused earlier by checks
    that name them too: ``num_blocks <= latent_size``, ``chunk_items <= 2**16``, group counts summing
    to ``num_items``)."""
    for field, value, message in [
        ("model", "m" * 257, "model is longer than 256 bytes"),
        ("key_words", (2**32, 1), "key word must be an int in \\[0, 4294967296\\)"),
        ("first_item", 2**32, "first_item must be an int in \\[0, 4294967296\\)"),
        ("plan_fingerprint", 2**32, "plan_fingerprint must be an int in \\[0, 4294967296\\)"),
        ("num_items", 2**64, "num_items must be an int in \\[0, 4294967297\\)"),
        ("snap_marks", 1, "snap_marks must be a bool, True only for a lossless archive, got 1"),
    ]:
        with pytest.raises(InvalidArgumentError, match=f"^{message}"):
            container.write(_header(**{field: value}), *_streams(_header()))


def test_a_header_cut_anywhere_names_the_field_it_cut():
    """A file cut after any byte (and given a valid CRC32 again) is refused with a ``FormatError``;
    inside the header the message names the field being read, in reading order; a group count of 0
    and an over-long item-table length are refused by name too."""
    header = _header()
    data = container.write(header, *_streams(header))
    fields, starts = [], {}
    for end in range(len(MAGIC), len(data) - 4):
        with pytest.raises(FormatError, match="truncated|out of range") as caught:
            container.read(_reframe(data[:end]))
        named = re.match(r"truncated: (.+?) needs \d+ bytes|(.+?) = \d+ is out of range", str(caught.value))
        if named and (name := named.group(1) or named.group(2)) not in fields:
            fields.append(name)
            starts[name] = end
    assert fields == [
        "version", "prng", "flags", "model length", "model", "coder name length", "coder name",
        "coder argument count", "coder argument", "key word 0", "key word 1", "first item", "latent size",
        "num blocks", "plan fingerprint", "item ndim", "item shape", "item dtype", "num items", "chunk items",
        "group count", "model count", "ZipfModel field", "model kind", "UniformModel field",
        "CategoricalModel field", "CategoricalModel field count", "group item count",
    ]
    # past the fields: a group count of 0, and the item table's lengths (named only by their varints)
    at = starts["group count"]
    with pytest.raises(FormatError, match="^the archive lists no group of entropy models$"):
        container.read(_reframe(data[:at] + b"\x00" + data[at + 1 : -4]))
    one_group = _header(groups=(header.groups[0],), group_counts=(header.num_items,))
    for h, name in [(header, "group stream length"), (one_group, "stream length")]:
        data = container.write(h, *_streams(h))
        table = container.read(data).header_bytes
        with pytest.raises(FormatError, match=f"^{name}: varint longer than 10 bytes"):
            container.read(_reframe(data[:table] + b"\x80" * 11 + data[table:-4]))
