"""The VAE as a lossless codec: exact round trips through bytes, rate accounting, integer tables."""

import decimal
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import betaln, gammaln

import jaxrec
from jaxrec import codec
from jaxrec.codec.blocks import BlockPlan
from jaxrec.coders.registry import REGISTRY
from jaxrec.core.errors import FormatError
from jaxrec.models import lossless, vae

CONFIG = vae.VAEConfig(image_shape=(6, 5), latent_dim=4, hidden=(16,))


@pytest.fixture(scope="module")
def model():
    return vae.VAE(CONFIG, rngs=nnx.Rngs(3))  # untrained


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, *CONFIG.image_shape), dtype=np.uint8)
    x[:, :2] = 0  # some MNIST-like background
    return x


@pytest.fixture(scope="module")
def plan():
    return BlockPlan(order=np.array([2, 0, 3, 1]), sizes=np.array([2, 2]), budget_bits=8.0)


@pytest.mark.slow  # 16 s cold in the fast tier
@pytest.mark.parametrize(
    "coder", [jaxrec.orc(2**6), jaxrec.pfr(chunk_size=64)], ids=["orc", "pfr"]
)
def test_exact_lossless_round_trip_through_bytes(model, images, plan, coder):
    report = codec.compress_report(model, images, key=7, coder=coder, plan=plan)
    assert isinstance(report.archive, bytes)
    decoded = np.asarray(codec.decompress_batch(model, report.archive, plan=plan))
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, images)
    single = np.asarray(codec.decompress(model, report.archive, plan=plan, item=2))
    np.testing.assert_array_equal(single, images[2])
    alone = codec.compress(model, images[2], key=7, coder=coder, plan=plan, item=2)
    np.testing.assert_array_equal(codec.decompress(model, alone, plan=plan), images[2])


def decoded_latents(report, plan, coder, key, prior):
    """z of every item, rebuilt here from the codes and the documented key layout
    ``fold_in(fold_in(key, item), block)``."""
    _, prior_blocks = plan.split(prior, prior)
    base = jaxrec.core.prng.as_key(key)
    n, num_blocks = report.code.index.shape
    latents = []
    for i in range(n):
        blocks = [
            coder.decode(
                jaxrec.core.prng.fold_in_index(jaxrec.core.prng.fold_in_index(base, i), b),
                jax.tree.map(lambda a: a[i, b], report.code),
                jax.tree.map(lambda a: a[b], prior_blocks),
            )
            for b in range(num_blocks)
        ]
        latents.append(plan.merge(jnp.stack(blocks)))
    return latents


@pytest.mark.slow  # 15 s cold in the fast tier (the ORC codec program); test_codec covers compress in the fast tier
def test_rate_accounting_sums(model, images, plan):
    coder = jaxrec.orc(2**6)
    report = codec.compress_report(model, images, key=1, coder=coder, plan=plan)
    latents = decoded_latents(report, plan, coder, 1, model.prior())
    np.testing.assert_allclose(report.index_bits, plan.num_blocks * 6.0)
    for x, z, data_bits in zip(images, latents, report.data_bits):
        weights = np.asarray(model.likelihood(z)).reshape(-1, 256).astype(np.float64)
        probs = weights[np.arange(weights.shape[0]), x.reshape(-1)] / weights.sum(axis=1)
        assert data_bits == pytest.approx(-np.log2(probs).sum(), rel=1e-9)
    assert report.header_bytes + report.payload_bytes == report.total_bytes == len(report.archive)
    # one chunk: two range-coded streams, each at most 64 bits over its ideal length (whole words)
    assert report.ideal_bits - 1 <= 8 * report.payload_bytes <= report.ideal_bits + 2 * 64
    reader = codec.ArchiveReader(model, report.archive, plan=plan)
    index_bits, data_bits = reader.rates()
    np.testing.assert_allclose(index_bits, report.index_bits)
    np.testing.assert_array_equal(data_bits, report.data_bits)


@pytest.mark.slow  # 4 s cold in the fast tier
def test_likelihood_is_integer_and_batch_jit_invariant(model):
    z = jax.random.normal(jax.random.key(0), (7, CONFIG.latent_dim)) * 2.0
    w = np.asarray(jax.jit(jax.vmap(model.likelihood))(z))
    assert w.dtype == np.int32 and w.shape == (7, *CONFIG.image_shape, 256)
    assert w.min() >= 1 and w.max() <= 2**30 + 1
    for i in (0, 6):
        np.testing.assert_array_equal(np.asarray(model.likelihood(z[i])), w[i])  # eager, unbatched


def test_integer_mlp_tracks_the_float_decoder(model):
    z = jax.random.normal(jax.random.key(1), (50, CONFIG.latent_dim))
    layers = [(l.kernel.get_value(), l.bias.get_value()) for l in model.decoder.layers]
    j = np.asarray(lossless.integer_mlp(layers, z))
    exact = np.asarray(model.decoder(z)) * 2**lossless.PARAM_FRAC_BITS
    assert np.abs(j - exact).max() <= 0.5 + 0.05  # rounding to the grid plus fixed-point error


@pytest.mark.parametrize("log2_a,log2_b", [(-8.0, -8.0), (-3.5, 0.25), (0.0, 0.0), (2.0, 7.0), (8.0, -6.0), (5.5, 5.5)])
def test_beta_binomial_weights_match_the_exact_pmf(log2_a, log2_b):
    scale = 2**lossless.PARAM_FRAC_BITS
    w = np.asarray(lossless.beta_binomial_weights(jnp.int32(log2_a * scale), jnp.int32(log2_b * scale)))
    a, b, n, k = 2.0**log2_a, 2.0**log2_b, 255, np.arange(256)
    log_p = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) + betaln(k + a, n - k + b) - betaln(a, b)
    p = np.exp(log_p)
    q = w / w.sum()
    assert p[w.argmax()] >= p.max() * (1 - 1e-3)  # the table's mode is a mode of the pmf
    kl_bits = np.sum(p * (log_p - np.log(q))) / np.log(2)
    assert kl_bits < 1e-4
    big = p > 1e-6
    np.testing.assert_allclose(q[big], p[big], rtol=3e-3)


def test_beta_binomial_weights_are_the_step_by_step_recurrence_bit_for_bit():
    """The weights (from prefix-sum tables) against the recurrence of the module docstring run
    step by step in numpy int64, on every ``alpha`` index with a spread of ``beta`` indices (and
    clipped ones): the likelihood tables are part of the file format, so not one bit may move."""
    log2_int, shifted = (t.astype(np.int64) for t in lossless._log2_tables())
    exp2 = lossless._exp2_table().astype(np.int64)
    limit, n = 256, 255
    ja = np.repeat(np.arange(-limit - 3, limit + 4), 5)
    jb = np.random.default_rng(0).integers(-limit - 3, limit + 4, ja.size)
    a, b = np.clip(ja, -limit, limit) + limit, np.clip(jb, -limit, limit) + limit
    ell = np.zeros((ja.size, n + 1), np.int64)
    for k in range(n):
        ell[:, k + 1] = ell[:, k] + log2_int[n - k] - log2_int[k + 1] + shifted[k, a] - shifted[n - 1 - k, b]
    gap = (ell.max(axis=1, keepdims=True) - ell) >> (lossless.LOG_FRAC_BITS - lossless.EXP_FRAC_BITS)
    expected = (exp2[gap & (2**lossless.EXP_FRAC_BITS - 1)] >> np.minimum(gap >> lossless.EXP_FRAC_BITS, 31)) + 1
    got = np.asarray(jax.jit(lossless.beta_binomial_weights)(jnp.asarray(ja, jnp.int32), jnp.asarray(jb, jnp.int32)))
    np.testing.assert_array_equal(got, expected)


def test_table_rounding_uses_exact_arithmetic_near_ties():
    # float64 says 2.5000000001 (rounds up); the exact value just below the tie must win
    got = lossless._round_fixed(np.array([2.5000000001, 7.2]), lambda i: decimal.Decimal("2.49999999999"))
    np.testing.assert_array_equal(got, [2, 7])
    log2_int, shifted = lossless._log2_tables()
    assert log2_int[8] == 3 * 2**16 and shifted[0, 256] == 0 and shifted[1, 256] == 2**16  # log2 1, log2(1 + 1)


def test_train_evaluate_and_checkpoint_round_trip(tmp_path, images):
    m = vae.VAE(CONFIG, rngs=nnx.Rngs(0))
    data = np.tile(images, (20, 1, 1))
    history = vae.train(m, data, epochs=3, batch_size=20, learning_rate=3e-3, progress=False)
    assert history[-1] < history[0]
    path = tmp_path / "vae.msgpack"
    vae.save_checkpoint(path, m, {"epochs": 3})
    loaded, meta = vae.load_checkpoint(path)
    assert meta == {"epochs": 3} and loaded.config == CONFIG
    z = jnp.linspace(-2.0, 2.0, CONFIG.latent_dim)
    np.testing.assert_array_equal(np.asarray(loaded.likelihood(z)), np.asarray(m.likelihood(z)))
    terms = vae.evaluate(loaded, images)
    assert terms.kl_bits.shape == (5,) and np.all(terms.kl_bits > 0) and np.all(terms.nll_bits > 0)
    (tmp_path / "bad").write_bytes(b"not a checkpoint")
    with pytest.raises(FormatError):
        vae.load_checkpoint(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="missing"):
        vae.load_checkpoint(tmp_path / "missing")


def test_posterior_is_narrower_than_the_prior(model, images):
    q = model.target(images[0])
    assert q.batch_shape == () and q.event_size == CONFIG.latent_dim
    assert np.all(np.asarray(q.scale) < 1.0)
    assert np.all(np.isfinite(np.asarray(jaxrec.log_sup_ratio(q, model.prior(), per_dim=True))))


H200 = Path(__file__).parent / "data" / "h200_latents.npz"


@pytest.mark.slow  # the packaged model's SP-PFR programs: ~30 s cold
def test_mnist_images_decode_with_the_latents_an_h200_regenerated(monkeypatch):
    """MNIST test images 1699 and 5617 (``tests/data/h200_latents.npz``): the latents an NVIDIA H200
    regenerated for their codes differ from XLA:CPU's by one ulp across a boundary of the VAE's
    ``2^-10`` grid (``-1439.4999`` against ``-1439.5``, ``1530.5`` against ``1530.5001``, in steps),
    so their format-3 archives, written on either backend, did not decode on the other. Written
    here (format 5) under their item numbers, each decodes exactly with the H200's latents; without
    the snap marks (``latent_step`` undeclared) neither does. The latents were recorded for the
    per-bin SP-PFR streams of format versions 2-4: the archives are written with
    ``shared_keys=False``, which draws them (format 5's default streams draw other points)."""
    recorded = np.load(H200)
    bundle = jaxrec.models.load("mnist-vae")
    coder, plan = bundle.setup("sp_pfr", 4)
    coder = functools.partial(coder, shared_keys=False)
    latents = codec.ArchiveReader._latents

    def h200(z_h200):
        def regenerate(self, symbols, positions):
            z = np.asarray(latents(self, symbols, positions))
            assert np.abs(z.astype(np.float64) - z_h200).max() < 1e-6  # the same candidates, other last bits
            return z_h200[None]
        return regenerate

    def decodes(item, image, z_h200):
        data = codec.compress(bundle.codec, image, key=0, coder=coder, plan=plan, item=int(item))
        with monkeypatch.context() as m:
            m.setattr(codec.ArchiveReader, "_latents", h200(z_h200))
            try:
                return np.array_equal(codec.decompress(bundle.codec, data, plan=plan), image)
            except FormatError:
                return False

    grid = lambda z: np.rint(z.astype(np.float64) * 1024)
    for item, image, z_h200, z_cpu in zip(*(recorded[k] for k in ("items", "images", "z_h200", "z_cpu"))):
        assert (grid(z_h200) != grid(z_cpu)).sum() == 1
        assert decodes(item, image, z_h200)
    monkeypatch.setattr(vae.VAE, "latent_step", None)
    assert not any(decodes(item, image, z) for item, image, z in zip(recorded["items"], recorded["images"], recorded["z_h200"]))


@pytest.mark.slow  # the packaged model's SP-PFR decoder: ~10 s cold
@pytest.mark.parametrize("version", [3, 4])
def test_archives_of_the_packaged_vae_from_older_formats_still_decode(version):
    """``tests/data/digits_format{3,4}.jxr``: the eight digits of ``tests/data/mnist_test_digits.npy``,
    written by jaxrec 0.3 and 0.4 (``jaxrec compress --model mnist-vae``; version 3 without snap marks,
    version 4 with them). Format 5 reads each as written: marks only where the header says so, and
    SP-PFR's per-bin streams, since a header older than version 5 has no ``shared_keys`` (it means
    ``False``); with format 5's streams the same codes decode to other digits."""
    data = (Path(__file__).parent / "data" / f"digits_format{version}.jxr").read_bytes()
    assert data[4] == version
    bundle = jaxrec.models.load("mnist-vae")
    _, plan = bundle.setup("sp_pfr", 4)
    digits = np.load(Path(__file__).parent / "data" / "mnist_test_digits.npy")
    assert codec.describe(data)["coder_params"] == {"chunk_size": 256, "max_steps": 2**20, "table_size": 4096}
    np.testing.assert_array_equal(codec.decompress_batch(bundle.codec, data, plan=plan), digits)
    entry = REGISTRY["sp_pfr"]
    with pytest.MonkeyPatch.context() as m:  # read as if version 5's streams had drawn it
        m.setitem(REGISTRY, "sp_pfr", entry._replace(added_params={"shared_keys": (version, True)}))
        with pytest.raises(FormatError):
            codec.decompress_batch(bundle.codec, data, plan=plan)
