"""The file format (version 2): exact round trips of headers, precise errors, and fuzzing.

Whatever bytes ``decompress`` gets, it returns the items the archive was written for or raises
FormatError -- never another exception, never a hang, never an allocation sized by an unchecked
header value, never a wrong reconstruction while the checksum holds.
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
from jaxrec.codec.container import (
    FORMAT_VERSION,
    ITEM_DTYPES,
    MAGIC,
    MAX_CHUNK_ITEMS,
    Header,
)
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


GOLDEN_HEX = "894a585202010000037066720203800103808080400007030301a9af8e270202030b0101010101049a99993f010034e5828dc4ac6b"
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
)
def test_header_round_trip(name, model, args, words, first, dims, fingerprint, shape, dtype, lossless, layout,
                           group_models, latent_dtype, words_per_stream):
    num_items, chunk, counts = layout
    header = Header(
        coder_name=name, coder_args=tuple(args), key_words=words, first_item=first, latent_size=dims[0],
        latent_dtype=latent_dtype, num_blocks=dims[1], plan_fingerprint=fingerprint, item_shape=tuple(shape),
        item_dtype=dtype, lossless=lossless, num_items=num_items, chunk_items=chunk,
        groups=(tuple(group_models),) * len(counts), group_counts=counts, model=model,
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


@pytest.mark.parametrize("name", ["small", "archive", "lossless"])
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
