"""Archives: many items in one file, written batch by batch, read item by item; the codec entry
points' argument checks (issue 11: wrong item shapes, NaN items, decoded dtypes, decoder-side codecs).
"""

import types
import zlib

import jax.numpy as jnp
import numpy as np
import pytest
from test_codec import GaussianChannel
from test_container import Counts

import jaxrec
from jaxrec import codec as jcodec
from jaxrec.codec import ArchiveReader, ArchiveWriter, container
from jaxrec.codec.archive import TARGET_CHUNK_BITS
from jaxrec.codec.sections import (
    SNAP_KEEP,
    apply_snaps,
    check_tables,
    data_ideal_bits,
    decode_index_chunk,
    encode_index_chunk,
    fields_ideal_bits,
    index_streams,
    snap_marks,
)
from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.entropy import PlanAlphabetModel, UniformModel, ZipfModel, zipf_bits

CODER = jaxrec.pfr(chunk_size=64)
PLAN = jaxrec.BlockPlan(order=np.array([2, 0, 1]), sizes=np.array([2, 1]), budget_bits=3.0)


def channel_items(n, seed=0):
    rng = np.random.default_rng(seed)
    loc = 0.6 * rng.normal(size=(n, 3))
    scale = 0.35 * np.exp(0.2 * rng.normal(size=(n, 3)))
    return np.stack([loc, scale], axis=1).astype(np.float32)


def count_items(n, seed=0, dtype=np.uint8):
    return np.random.default_rng(seed).integers(0, 4, (n, 3)).astype(dtype)


@pytest.fixture(scope="module")
def lossy():
    xs = channel_items(50)
    report = jcodec.compress_report(GaussianChannel(3), xs, key=3, coder=CODER, plan=PLAN, chunk_items=8)
    return xs, report, jaxrec.decompress_batch(GaussianChannel(3), report.archive, plan=PLAN)


@pytest.fixture(scope="module")
def lossless():
    xs = count_items(70)  # more than one likelihood batch (32) per chunk
    report = jcodec.compress_report(Counts(3), xs, key=4, coder=CODER, plan=PLAN, chunk_items=40)
    return xs, report


# ------------------------------------------------------------------------------------------------
# Writing and reading


@pytest.mark.slow  # 19 s in the fast tier (2 idle cores)
def test_batches_make_the_archive_of_one_call(lossy, lossless):
    """Items keep their numbers, chunks their boundaries and likelihood batches their alignment
    whatever the batches: the bytes are those of one call."""
    xs, report, _ = lossy
    writer = ArchiveWriter(GaussianChannel(3), key=3, coder=CODER, plan=PLAN, chunk_items=8)
    for part in (slice(0, 25), slice(25, 50)):  # a batch boundary inside a chunk
        writer.add(xs[part])
    assert writer.num_items == 50 and writer.finish() == report.archive
    xs, report = lossless
    writer = ArchiveWriter(Counts(3), key=4, coder=CODER, plan=PLAN, chunk_items=40)
    for part in (slice(0, 35), slice(35, 70)):  # inside a chunk, past its first likelihood batch
        writer.add(xs[part])
    assert writer.finish() == report.archive
    np.testing.assert_array_equal(writer.report().data_bits, report.data_bits)


def test_any_items_decode_alone(lossy, lossless):
    xs, report, decoded = lossy
    assert decoded.shape == (50, 3)
    reader = ArchiveReader(GaussianChannel(3), report.archive, plan=PLAN)
    assert len(reader) == 50 and reader.header.num_chunks == 7
    for items in ([49], [3, 40, 3, 17], list(range(8, 16))):
        np.testing.assert_array_equal(reader.read(items), decoded[items])
        np.testing.assert_array_equal(reader.latents(items), decoded[items])  # reconstruct(z) = z here
    assert reader.latents().dtype == np.float32
    np.testing.assert_array_equal(reader.latents(), decoded)
    with pytest.raises(InvalidArgumentError, match="items must be"):
        reader.latents([50])
    np.testing.assert_array_equal(jaxrec.decompress(GaussianChannel(3), report.archive, plan=PLAN, item=21), decoded[21])
    xs, report = lossless
    reader = ArchiveReader(Counts(3), report.archive, plan=PLAN)
    np.testing.assert_array_equal(reader.read(), xs)
    for items in ([0], [39], [69, 41, 5], [33]):  # chunk starts and ends, past a likelihood batch
        np.testing.assert_array_equal(reader.read(items), xs[items])


def test_rates_of_a_decoded_archive_match_the_encoder(lossless):
    _, report = lossless
    index_bits, data_bits = ArchiveReader(Counts(3), report.archive, plan=PLAN).rates()
    np.testing.assert_allclose(index_bits, report.index_bits, rtol=1e-12)
    np.testing.assert_allclose(data_bits, report.data_bits, rtol=1e-12)
    alpha = float(np.float32(jaxrec.entropy.zipf_exponent(PLAN.budget_bits)))
    np.testing.assert_allclose(report.index_bits, np.asarray(zipf_bits(report.code.index, alpha), np.float64).sum(1),
                               rtol=1e-6)


def test_items_with_their_own_budgets_form_groups():
    """Without a plan budget each item's models come from its largest block KL: items sharing one
    form a group, and the archive sends every item's group (a categorical over the groups)."""
    xs = channel_items(50, seed=1)  # the shapes of the lossy fixture: its compiled encoder is reused
    plan = jaxrec.BlockPlan(order=np.arange(3), sizes=np.array([2, 1]))
    report = jcodec.compress_report(GaussianChannel(3), xs, key=1, coder=CODER, plan=plan, chunk_items=7)
    header = container.read(report.archive).header
    budgets = np.ceil(report.block_kl.max(axis=1))
    assert len(header.groups) == len(np.unique(budgets)) > 1
    assert sorted(header.group_counts) == sorted(np.unique(budgets, return_counts=True)[1].tolist())
    decoded = jaxrec.decompress_batch(GaussianChannel(3), report.archive, plan=plan)
    np.testing.assert_array_equal(jaxrec.decompress_batch(GaussianChannel(3), report.archive, plan=plan, items=[49, 0]),
                                  decoded[[49, 0]])
    alphas = np.float32([jaxrec.entropy.zipf_exponent(b) for b in budgets])
    ideal = np.asarray(zipf_bits(report.code.index, alphas[:, None].astype(np.float64)), np.float64).sum(1)
    np.testing.assert_allclose(report.index_bits, ideal, rtol=1e-6)
    assert jcodec.describe(report.archive)["index_ideal_bits"] == pytest.approx(report.ideal_bits, rel=1e-9)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint32, np.int64])
def test_lossless_items_keep_their_dtype(dtype):
    xs = count_items(5, seed=2, dtype=dtype)
    data = jaxrec.compress_batch(Counts(3), xs, key=0, coder=CODER)
    out = jaxrec.decompress_batch(Counts(3), data)
    assert out.dtype == dtype and container.read(data).header.item_dtype == np.dtype(dtype).name
    np.testing.assert_array_equal(out, xs)
    one = jaxrec.decompress(Counts(3), jaxrec.compress(Counts(3), xs[1], key=0, coder=CODER))
    assert one.dtype == dtype and one.shape == (3,)
    np.testing.assert_array_equal(one, xs[1])


def test_the_default_chunk_size_amortizes_the_stream_ends(lossless, monkeypatch):
    """About TARGET_CHUNK_BITS ideal bits per chunk (estimated on the first batch); every stream at
    most 64 bits over its ideal."""
    xs, report = lossless
    per_item = report.ideal_bits / len(xs)
    monkeypatch.setattr(jaxrec.codec.archive, "TARGET_CHUNK_BITS", 10 * per_item)  # a small target: several chunks
    small = jcodec.compress_report(Counts(3), xs, key=4, coder=CODER, plan=PLAN)
    info = jcodec.describe(small.archive)
    assert 7 <= info["chunk_items"] <= 13 and info["num_chunks"] >= 5
    assert 8 * small.payload_bytes <= small.ideal_bits + 2 * 64 * info["num_chunks"]
    assert TARGET_CHUNK_BITS == 2**18 and jcodec.describe(report.archive)["chunk_items"] == 40


# ------------------------------------------------------------------------------------------------
# Argument checks at the boundary (issue 11)


class Shaped(GaussianChannel):
    """A codec that declares its item shape."""

    item_shape = (2, 3)


class Broken(GaussianChannel):
    """A codec whose target gives non-finite parameters for an item with a large first value."""

    def target(self, x):
        return jaxrec.DiagGaussian(jnp.where(x[0, 0] > 10, jnp.nan, x[0]), x[1])


class DecoderOnly:
    """The decoder's side of GaussianChannel: no target()."""

    def prior(self):
        return jaxrec.DiagGaussian(jnp.zeros(3), jnp.ones(3))

    def reconstruct(self, z):
        return z


class LosslessDecoderOnly(DecoderOnly):
    likelihood = Counts.likelihood


def test_compress_names_the_expected_item_shape():
    with pytest.raises(InvalidArgumentError, match=r"codec's item shape \(2, 3\), got items of shape \(3, 3\)"):
        jaxrec.compress(Shaped(3), np.zeros((3, 3), np.float32), key=0, coder=CODER)
    with pytest.raises(InvalidArgumentError, match=r"item shape \(3,\), got items of shape \(4,\)"):  # from likelihood
        jaxrec.compress_batch(LosslessTarget(), np.zeros((2, 4), np.uint8), key=0, coder=CODER)
    with pytest.raises(InvalidArgumentError, match=r"codec.target failed on items of shape \(7,\)"):
        jaxrec.compress(Flat(3), np.zeros(7, np.float32), key=0, coder=CODER)
    with pytest.raises(InvalidArgumentError, match="event size 3 like the prior, got 4"):
        jaxrec.compress(GaussianChannel(3), np.ones((2, 4), np.float32), key=0, coder=CODER)


class Flat(GaussianChannel):
    """Items are flat ``(6,)`` vectors (loc, then scale)."""

    def target(self, x):
        y = jnp.reshape(x, (2, 3))
        return jaxrec.DiagGaussian(y[0], y[1])


class LosslessTarget(Counts):
    """Counts with a traceable likelihood, so the item shape is read off it."""

    def __init__(self):
        super().__init__(3)

    def likelihood(self, z):
        return jnp.ones((3, 4), jnp.int32)


def test_nan_items_and_non_finite_targets_are_named():
    x = channel_items(3)
    x[1, 0, 2] = np.nan
    with pytest.raises(InvalidArgumentError, match="xs must be finite: item 1 has NaN"):
        jaxrec.compress_batch(GaussianChannel(3), x, key=0, coder=CODER)
    y = channel_items(3)
    y[2, 0, 0] = 11.0
    with pytest.raises(InvalidArgumentError, match="target of item 2 has non-finite parameters"):
        jaxrec.compress_batch(Broken(3), y, key=0, coder=CODER)


def test_bad_items_chunks_and_positions_are_refused(lossy):
    codec = GaussianChannel(3)
    for xs, message in [
        (np.zeros((2, 2, 3), np.complex64), "dtype"),
        (np.array([["a", "b", "c"]] * 2), "dtype"),
        ([[1.0, 2.0], [3.0]], "array of items"),
        (np.zeros((0, 2, 3), np.float32), "leading item axis"),
    ]:
        with pytest.raises(InvalidArgumentError, match=message):
            jaxrec.compress_batch(codec, xs, key=0, coder=CODER)
    with pytest.raises(InvalidArgumentError, match="chunk_items"):
        jaxrec.compress_batch(codec, channel_items(2), key=0, coder=CODER, chunk_items=0)
    with pytest.raises(InvalidArgumentError, match="integer arrays"):
        jaxrec.compress_batch(Counts(3), np.zeros((2, 3), np.float32), key=0, coder=CODER)
    writer = ArchiveWriter(codec, key=0, coder=CODER)
    with pytest.raises(InvalidArgumentError, match="empty"):
        writer.finish()
    writer.add(channel_items(2))
    with pytest.raises(InvalidArgumentError, match="one shape and dtype"):
        writer.add(channel_items(2).astype(np.float64))
    writer.finish()
    with pytest.raises(InvalidArgumentError, match="finished"):
        writer.add(channel_items(2))
    with pytest.raises(InvalidArgumentError, match="model"):
        ArchiveWriter(codec, key=0, coder=CODER, model="m" * 300)
    _, report, _ = lossy
    for items in ([1.5], [[1, 2]], [], [50], [-1], "0"):
        with pytest.raises(InvalidArgumentError, match="items must be"):
            jaxrec.decompress_batch(codec, report.archive, plan=PLAN, items=items)
    with pytest.raises(InvalidArgumentError, match="item must be an int"):
        jaxrec.decompress(codec, report.archive, plan=PLAN, item=2.0)


def test_the_decoder_needs_no_target(lossy, lossless):
    xs, report, decoded = lossy
    np.testing.assert_array_equal(jaxrec.decompress_batch(DecoderOnly(), report.archive, plan=PLAN), decoded)
    xs, report = lossless
    np.testing.assert_array_equal(jaxrec.decompress_batch(LosslessDecoderOnly(), report.archive, plan=PLAN), xs)
    with pytest.raises(FormatError, match="lossless, but the codec is lossy"):
        jaxrec.decompress_batch(DecoderOnly(), report.archive, plan=PLAN)
    with pytest.raises(FormatError, match="lossy, but the codec is lossless"):
        jaxrec.decompress_batch(LosslessDecoderOnly(), lossy[1].archive, plan=PLAN)
    with pytest.raises(InvalidArgumentError, match=r"encoder needs codec.target\(\)"):
        jaxrec.compress(DecoderOnly(), xs[0], key=0, coder=CODER)


# ------------------------------------------------------------------------------------------------
# Snap marks: a decoder whose latents differ in their last bits (another backend) decodes exactly


class Grid(Counts):
    """A lossless toy whose likelihood sees ``z`` only through ``q = rint(z / 2^-14)``: its peak moves
    with ``q mod 4``, so a decoder that rounds one coordinate into another cell gets other tables."""

    latent_step = STEP = 2.0**-14

    def likelihood(self, z):
        q = np.rint(np.asarray(z, np.float64) / self.STEP).astype(np.int64)
        return 1 + 1000 * (np.arange(4) == (q % 4)[:, None])


class GridWithoutStep(Grid):
    latent_step = None  # the same likelihood, undeclared: no snap marks


def other_backend(z, budget_ulps=8, budget_abs=4.8e-7):
    """``z`` as the worst decoder within ``max(8 ulp, 4.8e-7)`` of it sees it (XLA:GPU against XLA:CPU
    differed by at most 3 ulps and 4.77e-7 on the MNIST VAE): each coordinate that close to a rounding
    boundary of :class:`Grid` is moved across it."""
    z = np.asarray(z, np.float32)
    step = Grid.latent_step
    boundary = (np.floor(z.astype(np.float64) / step) + 0.5) * step
    budget = np.maximum(budget_ulps * np.spacing(np.abs(z)).astype(np.float64), budget_abs)
    across = np.where(z >= boundary, boundary - budget / 2, boundary + budget / 2).astype(np.float32)
    return np.where(np.abs(z - boundary) <= budget / 2, across, z)


def test_snap_marks_make_every_decoder_within_the_margin_see_the_encoders_cells():
    """The invariant behind the marks, on latents packed near the boundaries of a grid (exact ties
    among them): after ``apply_snaps`` with the encoder's marks, the encoder's ``z`` stays in its own
    ``rint`` cell and any ``z`` within the budget falls in that cell too; without the marks, some do
    not (the test can fail)."""
    rng = np.random.default_rng(0)
    step = Grid.latent_step
    cells = rng.integers(-2**14, 2**14, 20_000)  # |z| <= 1
    z = ((cells + 0.5) * step + rng.normal(scale=1e-6, size=cells.size)).astype(np.float32)[:, None]
    z[:8, 0] = ((cells[:8] + 0.5) * step).astype(np.float32)  # exact ties
    marks = snap_marks(z, step)
    cell = lambda v: np.rint(v.astype(np.float64) / step)
    np.testing.assert_array_equal(cell(apply_snaps(z, step, marks)), cell(z))  # the encoder keeps its cells
    for sign in (-1, 1):
        seen = z + sign * np.maximum(8 * np.spacing(np.abs(z)), np.float32(4.8e-7))
        np.testing.assert_array_equal(cell(apply_snaps(seen, step, marks)), cell(apply_snaps(z, step, marks)))
        assert (cell(seen) != cell(z)).sum() > 100  # the cells the marks save
        kept = marks == SNAP_KEEP
        np.testing.assert_array_equal(cell(seen)[kept], cell(z)[kept])
    assert 0 < (marks != SNAP_KEEP).mean() < 1  # both kinds of coordinate occur


def test_snap_margin_is_16_ulps_or_2_to_the_minus_20_and_a_grid_too_fine_for_it_is_refused():
    """The margin's two ends to the ulp: at ``|z|`` in [1, 2) 16 ulps (2^-19) are marked and 17 are
    not; near 0 the floor 2^-20 rules. A step whose margin reaches a quarter step is refused."""
    step = 2.0**-10
    for boundary, margin in ((1530.5 * step, 16 * 2.0**-23), (0.5 * step, 2.0**-20)):
        for sign in (-1, 1):
            inside = np.float32(boundary + sign * margin)
            outside = np.nextafter(inside, np.float32(sign * np.inf))
            assert snap_marks(np.array([[inside, outside]], np.float32), step)[0, 0] != SNAP_KEEP
            assert snap_marks(np.array([[inside, outside]], np.float32), step)[0, 1] == SNAP_KEEP
    snap_marks(np.array([[1.5]], np.float32), 2.0**-16)  # margin 1/8 of a step: fine
    with pytest.raises(InvalidArgumentError, match=r"latent_step = 7.62939453125e-06 is too fine for float32 latents at \|z\| = 1.5"):
        snap_marks(np.array([[0.0, 1.5]], np.float32), 2.0**-17)  # margin exactly 1/4 of a step


def test_an_archive_decodes_exactly_on_a_decoder_whose_latents_differ_in_the_last_bits(monkeypatch):
    """Format version 4: the writer sends snap marks for a codec that declares ``latent_step``, and a
    reader whose regenerated latents differ from the encoder's (:func:`other_backend`) still decodes
    every item; the same archive without marks does not."""
    xs = count_items(150)
    with_marks = jcodec.compress_batch(Grid(3), xs, key=4, coder=CODER, plan=PLAN)
    without = jcodec.compress_batch(GridWithoutStep(3), xs, key=4, coder=CODER, plan=PLAN)
    assert len(with_marks) > len(without)  # the marks cost a little
    assert container.read(with_marks).header.snap_marks and not container.read(without).header.snap_marks
    np.testing.assert_array_equal(jaxrec.decompress_batch(Grid(3), with_marks, plan=PLAN), xs)
    # the header says whether marks are there: a codec that declares a step reads a file without them
    np.testing.assert_array_equal(jaxrec.decompress_batch(Grid(3), without, plan=PLAN), xs)
    with pytest.raises(FormatError, match="carry snap marks, but the codec declares no latent_step"):
        jaxrec.decompress_batch(GridWithoutStep(3), with_marks, plan=PLAN)
    latents = ArchiveReader._latents
    moved = []

    def perturbed(self, symbols, positions):
        z = np.asarray(latents(self, symbols, positions))
        seen = other_backend(z)
        moved.append(int((np.rint(seen / Grid.latent_step) != np.rint(z / Grid.latent_step)).sum()))
        return seen

    monkeypatch.setattr(ArchiveReader, "_latents", perturbed)
    np.testing.assert_array_equal(jaxrec.decompress_batch(Grid(3), with_marks, plan=PLAN), xs)
    assert sum(moved) >= 3  # the perturbation crossed boundaries: without the marks this breaks
    try:
        wrong = jaxrec.decompress_batch(GridWithoutStep(3), without, plan=PLAN)
    except FormatError:
        pass
    else:
        assert not np.array_equal(wrong, xs)


def test_latent_step_must_be_a_power_of_two():
    class Odd(Grid):
        latent_step = 0.3

    for codec in (Odd(3), type("Flag", (Grid,), {"latent_step": True})(3)):
        with pytest.raises(InvalidArgumentError, match="codec.latent_step must be None or a power of two"):
            jcodec.compress_batch(codec, count_items(2), key=0, coder=CODER, plan=PLAN)


@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_likelihood_weights_are_checked_in_either_dtype(dtype):
    """``check_tables``: weights ``[n, *item_shape, K]`` become float64 ``[n, size, K]``; zeros, a row
    summing to 1, ``K = 1`` and items of no elements are fine; a negative weight, a row of zeros (and for
    floats NaN or inf) or a wrong shape (``K = 0`` included) is refused by name."""
    good = np.arange(24, dtype=dtype).reshape(2, 3, 4) % 5  # zeros in rows with positive sums
    good[1, 2] = (0, 0, 1, 0)  # a row that sums to 1
    table = check_tables(good, (3,))
    assert table.dtype == np.float64 and table.shape == (2, 3, 4)
    np.testing.assert_array_equal(table, good)
    assert check_tables(np.ones((2, 3, 1), dtype), (3,)).shape == (2, 3, 1)  # one level: K = 1
    assert check_tables(np.ones((2, 0, 4), dtype), (0,)).shape == (2, 0, 4)  # items of no elements
    bad = [(0, 1, 2, -1), (1, 2, slice(None), 0)] + ([(0, 0, 0, np.nan), (1, 1, 3, np.inf)] if dtype == np.float32 else [])
    for i, j, k, value in bad:
        weights = good.copy()
        weights[i, j, k] = value
        with pytest.raises(InvalidArgumentError, match="finite weights >= 0 with a positive sum per element"):
            check_tables(weights, (3,))
    with pytest.raises(InvalidArgumentError, match="finite weights >= 0 with a positive sum per element"):
        check_tables(np.full((1, 1, 1), -1, dtype), (1,))
    shape_error = r"has shape \(3, 4\) per item, the items have shape \(2,\) \(expected item shape \+ \(K,\)\)"
    with pytest.raises(FormatError, match=shape_error):
        check_tables(good, (2,), FormatError)
    with pytest.raises(InvalidArgumentError, match=r"has shape \(3, 0\) per item, the items have shape \(3,\)"):
        check_tables(np.ones((2, 3, 0), dtype), (3,))


def test_data_ideal_bits_and_their_refusals():
    """``-log2 p(x|z)`` per item from the tables; a value outside ``[0, K)`` (either end) or of
    weight 0 is refused naming the item and the flat position."""
    tables = np.tile(np.array([1.0, 0.0, 3.0, 4.0]), (2, 3, 1))  # [n=2, size=3, K=4]
    items = np.array([[0, 2, 3], [3, 3, 0]])
    np.testing.assert_allclose(data_ideal_bits(items, tables), -np.log2([1 / 8 * 3 / 8 * 4 / 8, 4 / 8 * 4 / 8 * 1 / 8]))
    for (i, pos, value), message in [((1, 2, 4), "item 1 has value 4 at flat position 2, outside \\[0, 4\\)"),
                                     ((0, 1, -1), "item 0 has value -1 at flat position 1, outside \\[0, 4\\)"),
                                     ((1, 0, 1), "weight 0 to item 1's value at flat position 0")]:
        bad = items.copy()
        bad[i, pos] = value
        with pytest.raises(InvalidArgumentError, match=message):
            data_ideal_bits(bad, tables)


class QuantizedCounts(Counts):
    """:class:`Counts` (irregular integer weights) of ``z`` rounded to a grid of ``2^-10``."""

    latent_step = 2.0**-10

    def likelihood(self, z):
        return super().likelihood(np.rint(np.asarray(z, np.float64) / self.latent_step) * self.latent_step)


def test_golden_lossless_archive_with_snap_marks():
    """The bytes of a small lossless archive with snap marks (:class:`QuantizedCounts`) are pinned:
    the snap marks' model, constriction's categorical coder and its quantization (``perfect=False``)
    all feed into them. If this changes, stored files break: bump FORMAT_VERSION."""
    data = jcodec.compress_batch(QuantizedCounts(3), count_items(40, seed=3), key=9, coder=CODER, plan=PLAN)
    assert container.read(data).header.snap_marks
    assert (len(data), zlib.crc32(data[:-4])) == GOLDEN_LOSSLESS, (len(data), zlib.crc32(data[:-4]))


GOLDEN_LOSSLESS = (113, 2010042067)  # bytes, CRC32 of all but the stored checksum


def test_index_streams_of_a_message_with_a_plan_alphabet_between_other_symbols():
    """A message ``(b: Uniform(16), bins: plan alphabet, a: Zipf)``: one stream per symbol and per bin
    alphabet size above 1 (sizes 1 send nothing), in message order; a chunk's symbols round-trip
    through the streams; the ideal bits add up every stream's cost."""
    sizes = np.array([[1, 4, 2], [4, 4, 1]])  # (B, 3) bin alphabet sizes
    entry = types.SimpleNamespace(alphabet=lambda plan, symbol: sizes)
    shapes = {"b": (2,), "bins": (2, 3), "a": (2,)}
    streams = index_streams(entry, [UniformModel(16), PlanAlphabetModel(), ZipfModel(1.5)], None, shapes)
    assert [(s.symbol, s.model) for s in streams] == [
        ("b", UniformModel(16)), ("bins", UniformModel(2)), ("bins", UniformModel(4)), ("a", ZipfModel(1.5))
    ]
    rng = np.random.default_rng(0)
    symbols = {"b": rng.integers(0, 16, (5, 2)), "bins": rng.integers(0, 4, (5, 2, 3)) % sizes, "a": rng.integers(0, 40, (5, 2))}
    decoded = decode_index_chunk(encode_index_chunk([(streams, symbols)]), [(streams, 5)], shapes)[0]
    for name, values in symbols.items():
        np.testing.assert_array_equal(decoded[name], values)
    expected = 2 * 4 + np.log2(sizes).sum() + np.asarray(zipf_bits(symbols["a"], 1.5)).sum(axis=1)
    np.testing.assert_allclose(fields_ideal_bits(streams, symbols), expected, rtol=1e-6)
