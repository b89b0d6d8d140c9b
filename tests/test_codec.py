"""compress / decompress through the codec protocol: round trips through archives, the batched and
sharded path against plain per-block encoding, exactness end to end, rate accounting, portability,
errors.

Compilation dominates on CPU, so each configuration is compiled once: module-scoped fixtures share
one plan, one latent size and one coder between the tests and the lossy and lossless models.
"""

import functools
import struct
import warnings
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from flax import nnx

import jaxrec
from jaxrec import codec as jcodec
from jaxrec.codec import container
from jaxrec.codec.blocks import plan_blocks
from jaxrec.coders import registry
from jaxrec.coders.sp._sp_orc import sp_orc
from jaxrec.coders.sp.partition import Partition
from jaxrec.core import prng
from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.entropy import zipf_bits

DATA_DIM, LATENT_DIM, LEVELS = 10, 12, 5
KEY = 11


class ToyVAE(nnx.Module):
    """A tiny "VAE": amortized posterior N(tanh(W x + b), diag s^2), prior N(0, I), linear decoder.

    With ``levels`` it is lossless: items are integer vectors in ``[0, levels)`` and the decoder's
    softmax, quantized to integer weights, is the likelihood used to entropy-code them.
    """

    def __init__(self, *, rngs: nnx.Rngs, levels: int | None = None):
        self.levels = levels
        self.encoder = nnx.Linear(DATA_DIM, LATENT_DIM, rngs=rngs)
        self.log_scale = nnx.Param(jnp.full((LATENT_DIM,), -0.8))
        self.decoder = nnx.Linear(LATENT_DIM, DATA_DIM * (levels or 1), rngs=rngs)

    def prior(self):
        return jaxrec.DiagGaussian(jnp.zeros(LATENT_DIM), jnp.ones(LATENT_DIM))

    def target(self, x):
        x = x.astype(jnp.float32) / (self.levels or 1)
        # tanh keeps D_inf bounded, so no block needs an outlandish number of PFR steps
        return jaxrec.DiagGaussian(jnp.tanh(self.encoder(x)), jnp.exp(self.log_scale[...]))

    def reconstruct(self, z):
        out = self.decoder(z)
        return out if self.levels is None else jnp.argmax(out.reshape(DATA_DIM, self.levels), axis=-1)


class ToyLosslessVAE(ToyVAE):
    def likelihood(self, z):
        probs = jax.nn.softmax(self.decoder(z).reshape(DATA_DIM, self.levels), axis=-1)
        return np.floor(np.asarray(probs, np.float64) * 2**16).astype(np.int64) + 1


class GaussianChannel:
    """Plain channel simulation: item ``x = (loc, scale)`` of shape ``(2, D)``, ``Q = N(loc, scale^2)``,
    ``P = N(0, I)``, ``reconstruct(z) = z``: decompress returns the decoded latent itself."""

    def __init__(self, dim: int, dtype=jnp.float32):
        self.dim, self.dtype = dim, dtype

    def prior(self):
        return jaxrec.DiagGaussian(jnp.zeros(self.dim, self.dtype), jnp.ones(self.dim, self.dtype))

    def target(self, x):
        return jaxrec.DiagGaussian(x[0], x[1])

    def reconstruct(self, z):
        return z


def channel_items(n, dim, seed=0, dtype=jnp.float32):
    k1, k2 = jax.random.split(jax.random.key(seed))
    loc = 0.6 * jax.random.normal(k1, (n, dim), dtype)
    scale = 0.35 * jnp.exp(0.2 * jax.random.normal(k2, (n, dim), dtype))
    return jnp.stack([loc, scale], axis=1)


def expected_latents(plan, prior, key, items, indices):
    """The encoder's chosen candidates, rebuilt from the documented key derivation alone: block
    ``b`` of item ``i`` is candidate ``indices[i, b]`` of ``prior_b`` under ``fold_in(fold_in(key, i), b)``."""
    _, prior_blocks = plan.split(prior, prior)
    key = prng.as_key(key)

    def item_latent(item, index):
        item_key = prng.fold_in_index(key, item)
        sample = lambda b, p, n: prng.candidates(prng.fold_in_index(item_key, b), n[None], p)[0]
        return jax.vmap(sample)(jnp.arange(plan.num_blocks), prior_blocks, index)

    blocks = jax.jit(jax.vmap(item_latent))(jnp.asarray(items, jnp.uint32), jnp.asarray(indices))
    return plan.merge(blocks)


PFR = jaxrec.pfr(chunk_size=64)
NUM_ITEMS = 61  # not a multiple of the 4 devices: the sharded path pads the batch
NUM_KS_ITEMS = 4999


@pytest.fixture(scope="module")
def plan():
    """Shared statistics: the mean KL per latent dimension over 64 training items."""
    model = ToyVAE(rngs=nnx.Rngs(0))
    xs = jax.random.normal(jax.random.key(1), (64, DATA_DIM))
    stats = np.asarray(jaxrec.kl(jax.vmap(model.target)(xs), model.prior(), per_dim=True)).mean(0)
    return plan_blocks(stats, 3.5, key=0)


def _compressed_batch(plan, num_items, chunk_items=None):
    """One sharded compress_report of ``num_items`` items into one archive and one decompress_batch of it."""
    model = ToyVAE(rngs=nnx.Rngs(0))
    xs = jax.random.normal(jax.random.key(2), (num_items, DATA_DIM))
    report = jcodec.compress_report(model, xs, key=KEY, coder=PFR, plan=plan, chunk_items=chunk_items)
    decoded = jaxrec.decompress_batch(model, report.archive, plan=plan)
    z = expected_latents(plan, model.prior(), KEY, np.arange(num_items), report.code.index)
    return model, xs, report, decoded, z


@pytest.fixture(scope="module")
def batch(plan):
    """61 items in chunks of 16 (four chunks, the last one short)."""
    return _compressed_batch(plan, NUM_ITEMS, chunk_items=16)


def test_plan_pads_blocks_and_the_batch_is_sharded(plan, batch):
    assert plan.num_blocks >= 2 and not plan.mask.all()
    assert len(jax.devices()) == 4  # conftest: four virtual CPU devices
    _, _, report, _, _ = batch
    assert report.code.index.shape == (NUM_ITEMS, plan.num_blocks)
    assert not report.code.exhausted.any()


@pytest.mark.slow
def test_decoded_latents_are_exact_samples_of_the_targets(plan):
    """Blocks, padding, keys, sharding and bytes keep PFR exact: per-dimension KS over 4999 items
    decoded from one archive (their latents rebuilt from the codes, which the round trip checks)."""
    model, xs, report, decoded, z = _compressed_batch(plan, NUM_KS_ITEMS)
    np.testing.assert_allclose(decoded, jax.vmap(model.reconstruct)(z), rtol=1e-5, atol=1e-6)
    assert report.overhead < 0.01  # default chunks (about 2^18 ideal bits): stream ends are amortized
    target = jax.vmap(model.target)(xs)
    standardized = np.asarray((z - target.loc) / target.scale)
    for d in range(LATENT_DIM):
        assert scipy.stats.kstest(standardized[:, d], "norm").pvalue > 1e-3, d


def test_round_trip_through_bytes_rebuilds_the_encoders_candidates(batch, plan):
    model, _, report, decoded, z = batch
    np.testing.assert_allclose(decoded, jax.vmap(model.reconstruct)(z), rtol=1e-5, atol=1e-6)
    one = jaxrec.decompress(model, report.archive, plan=plan, item=3)
    np.testing.assert_allclose(one, model.reconstruct(z[3]), rtol=1e-5, atol=1e-6)
    assert decoded.shape == (NUM_ITEMS, DATA_DIM)
    some = jaxrec.decompress_batch(model, report.archive, plan=plan, items=[60, 3, 25, 3])
    np.testing.assert_array_equal(some, decoded[[60, 3, 25, 3]])


@pytest.mark.slow  # 15 s in the fast tier (2 idle cores)
def test_single_item_files_and_one_device_give_the_same_codes(batch, plan):
    """An item keeps its code whatever the archive: alone (``compress(item=i)``), or in a batch on
    one device rather than sharded over four."""
    model, xs, report, decoded, _ = batch
    for i in (0, 34, NUM_ITEMS - 1):
        data = jaxrec.compress(model, xs[i], key=KEY, coder=PFR, plan=plan, item=i)
        np.testing.assert_array_equal(jaxrec.decompress(model, data, plan=plan), decoded[i])
    one_device = jcodec.compress_report(model, xs[7:9], key=KEY, coder=PFR, plan=plan, first_item=7,
                                        devices=jax.devices()[:1])
    np.testing.assert_array_equal(one_device.code.index, report.code.index[7:9])


@pytest.mark.slow  # 5 s cold in the fast tier (per-block encoders of its own)
def test_codes_match_plain_per_block_encoding(batch, plan):
    """The padded, batched (refilling lanes), sharded path gives the codes of ``coder.encode`` on
    the raw, unpadded blocks with the documented keys."""
    model, xs, report, _, _ = batch
    encode = jax.jit(PFR.encode)
    for item in (5, 50):
        target = model.target(xs[item])
        item_key = prng.fold_in_index(prng.as_key(KEY), item)
        for b in range(plan.num_blocks):
            dims = plan.index[b, : plan.sizes[b]]
            code = encode(
                prng.fold_in_index(item_key, b),
                jax.tree.map(lambda a: a[dims], target),
                jax.tree.map(lambda a: a[dims], model.prior()),
            )
            assert int(code.index) == int(report.code.index[item, b]), (item, b)
            assert int(code.steps) == int(report.code.steps[item, b]), (item, b)


def test_rate_accounting(batch, plan):
    _, _, report, _, _ = batch
    alpha = float(np.float32(jaxrec.entropy.zipf_exponent(plan.budget_bits)))
    ideal = np.asarray(zipf_bits(report.code.index, alpha), np.float64).sum(axis=1)
    np.testing.assert_allclose(report.index_bits, ideal, rtol=1e-6)
    assert not report.data_bits.any()
    info = jcodec.describe(report.archive)
    assert info["index_ideal_bits"] == pytest.approx(report.ideal_bits, rel=1e-6)
    assert report.total_bytes == len(report.archive) == report.header_bytes + report.payload_bytes
    # one range-coder stream per chunk: at most 64 bits over the ideal each (whole 32-bit words)
    assert 8 * report.payload_bytes <= report.ideal_bits + 64 * info["num_chunks"]
    assert report.header_bytes <= 60 + 3 * info["num_chunks"]  # the header, then a varint length per chunk
    # the Zipf codelength stays near the KL (Li & El Gamal: KL + log2(KL + 2) + 2 per block, on average)
    kl = report.block_kl
    assert ideal.mean() <= (kl + np.log2(kl + 2) + 2).sum(axis=1).mean()


@pytest.mark.slow  # 12 s cold in the fast tier; test_archive's lossless fixture round-trips integer items
def test_lossless_round_trip_is_exact(plan):
    model = ToyLosslessVAE(rngs=nnx.Rngs(0), levels=LEVELS)
    xs = jax.random.randint(jax.random.key(3), (3, DATA_DIM), 0, LEVELS)
    for i, x in enumerate(xs):
        report = jcodec.compress_report(model, x[None], key=KEY, coder=PFR, plan=plan, first_item=i, devices=jax.devices()[:1])
        data = report.archive
        np.testing.assert_array_equal(jaxrec.decompress(model, data, plan=plan), x)
        z = expected_latents(plan, model.prior(), KEY, [i], report.code.index)[0]
        w = model.likelihood(z)
        p = w[np.arange(DATA_DIM), np.asarray(x)] / w.sum(-1)
        assert report.data_bits[0] == pytest.approx(-np.log2(p).sum(), rel=1e-9)
        assert report.payload_bytes * 8 <= report.ideal_bits + 2 * 64
    with pytest.raises(FormatError, match="lossless"):
        jaxrec.decompress(ToyVAE(rngs=nnx.Rngs(0)), data, plan=plan)
    with pytest.raises(InvalidArgumentError, match="outside"):
        jaxrec.compress(model, xs[0] + LEVELS, key=KEY, coder=PFR, plan=plan)


# ------------------------------------------------------------------------------------------------
# Portability: the decoder reproduces the encoder's dtype whatever its own x64 setting


def test_float32_file_decodes_identically_under_x64(batch, plan):
    """An x64 decoder with a float64 prior regenerates the float32 candidates the file names
    (GaussianChannel's reconstruct is the identity, so it returns the latent itself)."""
    _, _, report, _, z = batch
    with jax.enable_x64(True):
        again = jaxrec.decompress(GaussianChannel(LATENT_DIM, jnp.float64), report.archive, plan=plan, item=7)
    assert again.dtype == jnp.float32
    np.testing.assert_array_equal(again, z[7])


@pytest.mark.slow  # 5 s cold in the fast tier
def test_eager_decoding_matches_jitted_decoding(batch, plan):
    """The decoder's whole path (keys, split, candidate regeneration, merge) without jit gives the
    same latent bit for bit."""
    _, _, report, _, z = batch
    with jax.disable_jit():
        eager = jaxrec.decompress(GaussianChannel(LATENT_DIM), report.archive, plan=plan, item=11)
    np.testing.assert_array_equal(eager, z[11])


@pytest.mark.slow  # 10 s cold in the fast tier (its own float64 programs)
def test_float64_round_trip_and_refusal_without_x64():
    plan = plan_blocks(np.full(4, 1.0), 2.5, shuffle=False)
    with jax.enable_x64(True):
        codec = GaussianChannel(4, jnp.float64)
        x = channel_items(1, 4, seed=5, dtype=jnp.float64)[0]
        report = jcodec.compress_report(codec, x[None], key=3, coder=PFR, plan=plan, devices=jax.devices()[:1])
        data = report.archive
        assert container.read(data).header.latent_dtype == "float64"
        z = jaxrec.decompress(codec, data, plan=plan)
        assert z.dtype == jnp.float64
        np.testing.assert_array_equal(z, expected_latents(plan, codec.prior(), 3, [0], report.code.index)[0])
    with pytest.raises(FormatError, match="float64"):
        jaxrec.decompress(GaussianChannel(4), data, plan=plan)


# ------------------------------------------------------------------------------------------------
# Registry: custom coders, space-partitioning coders with per-block partitions


def test_register_coder_round_trip():
    def orc_alias(num_samples, chunk_size=None):
        coder = jaxrec.orc(num_samples, chunk_size)
        alias = jaxrec.CoderSpec("orc_alias", coder.spec.params)

        def encode(key, target, prior):  # the code says which coder made it
            return coder.encode(key, target, prior).replace(coder="orc_alias")

        def decode(key, code, prior):
            return coder.decode(key, code.replace(coder="orc"), prior)

        return jaxrec.Coder(encode, decode, alias)

    jaxrec.register_coder(
        "orc_alias", orc_alias, params=("num_samples", "chunk_size"), message=registry.uniform_index_message
    )
    try:
        codec = GaussianChannel(3)
        x = channel_items(1, 3, seed=2)[0]
        report = jcodec.compress_report(codec, x[None], key=5, coder=orc_alias(64), first_item=9, devices=jax.devices()[:1])
        data = report.archive
        info = jcodec.describe(data)
        assert info["coder"] == "orc_alias" and info["coder_params"] == {"num_samples": 64, "chunk_size": 64}
        assert info["index_ideal_bits"] == pytest.approx(6.0) == report.index_bits[0]
        expected = expected_latents(jaxrec.codec.blocks.single_block(3), codec.prior(), 5, [9], report.code.index)[0]
        np.testing.assert_array_equal(jaxrec.decompress(codec, data), expected)
    finally:
        del registry.REGISTRY["orc_alias"]
    with pytest.raises(FormatError, match="unknown coder"):
        jaxrec.decompress(codec, data)


@pytest.mark.slow  # 11 s in the fast tier (2 idle cores)
@pytest.mark.mutation  # the only fast-enough archive of several bin alphabets (codec/sections' index streams)
def test_space_partitioning_coder_with_per_block_partitions():
    codec = GaussianChannel(5)
    xs = channel_items(4, 5, seed=4)
    plan = plan_blocks(np.full(5, 1.2), 3.0, shuffle=False).with_partitions(
        lambda dims, size: Partition(np.where(np.arange(size) < dims.size, 2 + (dims % 2), 1), max_intervals=3)
    )
    np.testing.assert_array_equal(plan.partitions.num_intervals, [[2, 3], [2, 3], [2, 1]])
    coder = functools.partial(sp_orc, num_samples=32)
    report = jcodec.compress_report(codec, xs, key=2, coder=coder, plan=plan)
    assert container.read(report.archive).header.coder_args == (32, 32)
    decoded = jaxrec.decompress_batch(codec, report.archive, plan=plan)
    _, prior_blocks = plan.split(codec.prior(), codec.prior())
    decode = jax.jit(lambda part, key, code, prior: sp_orc(part, 32).decode(key, code, prior))
    for i in range(4):
        item_key = prng.fold_in_index(prng.as_key(2), i)
        blocks = [
            decode(*jax.tree.map(lambda a: a[b], (plan.partitions,)), prng.fold_in_index(item_key, b),
                   jax.tree.map(lambda a: a[i, b], report.code), jax.tree.map(lambda a: a[b], prior_blocks))
            for b in range(plan.num_blocks)
        ]
        # equal up to an ulp: the in-bin quantile is compiled differently unbatched and batched
        np.testing.assert_allclose(decoded[i], plan.merge(jnp.stack(blocks)), rtol=1e-6)
    # bins cost log2 J_d each (uniform), the within-bin index log2 N
    bins_bits = np.log2(plan.partitions.num_intervals).sum()
    np.testing.assert_allclose(report.index_bits, bins_bits + plan.num_blocks * 5.0)
    with pytest.raises(FormatError, match="plan"):
        jaxrec.decompress_batch(codec, report.archive, plan=plan_blocks(np.full(5, 1.2), 3.0, shuffle=False))
    version_2 = report.archive[:4] + b"\x02" + report.archive[5:-4]  # the same codes as a version-2 file
    with pytest.raises(FormatError, match="version-2 .* holds float32 'sp_orc' codes.*jaxrec 0.2"):
        jaxrec.decompress_batch(codec, version_2 + struct.pack("<I", zlib.crc32(version_2)), plan=plan)
    with pytest.raises(InvalidArgumentError, match="partitions"):
        jaxrec.compress(codec, xs[0], key=2, coder=sp_orc(Partition(np.array([2, 2])), 32), plan=plan_blocks(np.full(5, 1.2), 3.0))


# ------------------------------------------------------------------------------------------------
# Errors at the boundary


def test_compress_rejects_bad_arguments(batch, plan):
    model, xs, _, _, _ = batch
    vae_plan = plan
    with pytest.raises(InvalidArgumentError, match="not registered"):
        jaxrec.compress(model, xs[0], key=1, coder=jaxrec.CoderSpec("nope", ()), plan=vae_plan)
    with pytest.raises(InvalidArgumentError, match="parameters"):
        jaxrec.compress(model, xs[0], key=1, coder=jaxrec.CoderSpec("pfr", (("chunk_size", 64),)), plan=vae_plan)
    with pytest.raises(InvalidArgumentError, match="dimensions"):
        jaxrec.compress(model, xs[0], key=1, coder=PFR, plan=plan_blocks(np.ones(5), 2.0))
    with pytest.raises(InvalidArgumentError, match="seed"):
        jaxrec.compress(model, xs[0], key=-1, coder=PFR, plan=vae_plan)
    with pytest.raises(InvalidArgumentError, match="needs codec.prior"):
        jaxrec.compress(object(), xs[0], key=1, coder=PFR)
    with pytest.raises(InvalidArgumentError, match="D_inf"):  # a target wider than the prior
        jaxrec.compress(GaussianChannel(2), jnp.array([[0.0, 0.0], [1.5, 0.5]]), key=1, coder=PFR)
    with pytest.raises(InvalidArgumentError, match="first_item"):
        jaxrec.compress_batch(model, xs[:3], key=1, coder=PFR, plan=vae_plan, first_item=2**32 - 2)


def test_decompress_rejects_inconsistent_headers(batch, plan):
    model, _, report, _, _ = batch
    vae_plan = plan
    with pytest.raises(FormatError, match="another block plan"):
        jaxrec.decompress_batch(model, report.archive, plan=plan_blocks(np.ones(LATENT_DIM), 3.0, key=9))
    with pytest.raises(FormatError, match="another block plan"):
        jaxrec.decompress_batch(model, report.archive)  # the default one-block plan
    with pytest.raises(FormatError, match="dimensions"):
        jaxrec.decompress_batch(GaussianChannel(7), report.archive)
    with pytest.raises(InvalidArgumentError, match="one archive"):
        jaxrec.decompress_batch(model, [report.archive], plan=vae_plan)
    with pytest.raises(InvalidArgumentError, match="61 items: pass item=i"):
        jaxrec.decompress(model, report.archive, plan=vae_plan)
    with pytest.raises(InvalidArgumentError, match="items must be positions"):
        jaxrec.decompress_batch(model, report.archive, plan=vae_plan, items=[NUM_ITEMS])


def test_exhausted_search_warns():
    codec = GaussianChannel(2)
    x = jnp.array([[2.0, -2.0], [0.1, 0.1]])
    with pytest.warns(RuntimeWarning, match="step limit"):
        data = jaxrec.compress(codec, x, key=1, coder=jaxrec.pfr(chunk_size=8, max_steps=8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert jaxrec.decompress(codec, data).shape == (2,)


@pytest.mark.slow  # ~11 s on 2 idle cores (many one-dimensional blocks); the contract suite round-trips GPRS too
def test_gprs_round_trip_with_one_dimension_per_block():
    """GPRS codes 1-D blocks: a plan with one latent dimension per block, decoded from the header."""
    codec = GaussianChannel(4)
    xs = channel_items(3, 4, seed=6)
    plan = plan_blocks(np.full(4, 2.0), 2.0, key=0, max_block_size=1)
    assert plan.num_blocks == 4
    coder = jaxrec.gprs(chunk_size=32, max_steps=2**14)
    report = jcodec.compress_report(codec, xs, key=8, coder=coder, plan=plan, devices=jax.devices()[:1])
    assert jcodec.describe(report.archive)["coder"] == "gprs"
    decoded = jaxrec.decompress_batch(codec, report.archive, plan=plan)
    expected = expected_latents(plan, codec.prior(), 8, np.arange(3), report.code.index)
    np.testing.assert_array_equal(decoded, expected)
