"""MIRACLE with Mean-Var / Mean-KL: the Mean-KL map, the Bayesian network, training, the codec and
its retraining, the compressed-network file."""

import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from flax import nnx, serialization

import jaxrec
from jaxrec.models import bnn

# ------------------------------------------------------------------------------------------------
# The Mean-KL map


def excess64(t):
    """``h(t) = t + e^{-t} - 1`` in float64, by series below 1/2."""
    t = np.asarray(t, np.float64)
    series = sum((-t) ** k / math.factorial(k + 2) for k in range(25))
    return np.where(t < 0.5, t * t * series, t + np.expm1(-t))


DELTAS = np.concatenate([[0.0, 1.2e-38, 1e-30, 1e-20, 1e-12, 1e-8, 1e-6, 1e-4], np.logspace(-3, 2.5, 60)])


def test_variance_ratio_solves_the_lambert_w_equation_in_float32():
    delta = jnp.asarray(DELTAS, jnp.float32)
    t = np.asarray(bnn.neg_log_variance_ratio(delta))
    assert t.dtype == np.float32 and t[0] == 0.0 and np.all(t >= 0)
    d64 = np.asarray(delta, np.float64)
    np.testing.assert_allclose(excess64(t), d64, rtol=1e-6, atol=0)
    # s = -W0(-e^{-1-delta}) (scipy in float64 is accurate away from the branch point)
    far = d64 >= 1e-3
    s = -scipy.special.lambertw(-np.exp(-1.0 - d64[far]), 0).real
    np.testing.assert_allclose(t[far], -np.log(s), rtol=2e-6)
    np.testing.assert_allclose(np.asarray(bnn.excess_from_log_variance_ratio(-t)), excess64(t), rtol=2e-6, atol=1e-44)


def test_variance_ratio_derivative_is_implicit_and_finite():
    delta = jnp.asarray(DELTAS, jnp.float32)
    grad = np.asarray(jax.vmap(jax.grad(bnn.neg_log_variance_ratio))(delta))
    t = np.asarray(bnn.neg_log_variance_ratio(delta), np.float64)
    inner = DELTAS > 1e-12
    assert np.all(np.isfinite(grad)) and grad[0] == 0.0
    np.testing.assert_allclose(grad[inner], 1.0 / -np.expm1(-t[inner]), rtol=1e-5)


KAPPAS = [0.0, 1e-30, 1e-12, 1e-6, 1e-3, 0.1, 0.23, 1.0, 6.93, 20.0, 60.0]
MEAN_RATIOS = [0.0, 1e-3, 0.5, 1.0, 3.0, 20.0, 1e6, -2.0, -1e6]


@pytest.mark.parametrize("prior_scale", [1e-3, 0.37, 5.0])
def test_mean_kl_gaussian_has_the_requested_kl_and_a_feasible_mean(prior_scale):
    kappa, ratio = (np.asarray(a, np.float32).ravel() for a in np.meshgrid(KAPPAS, MEAN_RATIOS))
    radius = prior_scale * np.sqrt(2.0 * kappa)
    prior = jaxrec.DiagGaussian(jnp.zeros(kappa.size), jnp.full(kappa.size, prior_scale))
    q = bnn.mean_kl_gaussian(jnp.asarray(ratio * radius), jnp.asarray(kappa), prior)
    loc, scale = np.asarray(q.loc, np.float64), np.asarray(q.scale, np.float64)
    assert np.all(scale > 0) and np.all(scale <= np.float32(prior_scale))
    assert np.all(np.abs(loc) <= radius * (1 + 1e-6) + 1e-7 * prior_scale)
    sigma_p = np.float64(np.float32(prior_scale))
    kl = 0.5 * (excess64(-2.0 * np.log(scale / sigma_p)) + (loc / sigma_p) ** 2)
    # sigma is a float32: its rounding (2^-24 relative) alone moves the recomputed KL by about
    # t 2^-24 ~ 2^-24 sqrt(2 kappa), which dominates for small kappa
    kappa64 = kappa.astype(np.float64)
    assert np.all(np.abs(kl - kappa64) <= 4e-6 * kappa64 + 2e-7 * np.sqrt(2 * kappa64) + 1e-30)
    # small |m| / r: the mean is m
    central = np.abs(ratio) <= 1e-3
    np.testing.assert_allclose(loc[central], (ratio * radius)[central], rtol=1e-6, atol=1e-30)
    shifted = bnn.mean_kl_gaussian(jnp.asarray(ratio * radius), jnp.asarray(kappa), jaxrec.DiagGaussian(prior.loc + 1.0, prior.scale))
    np.testing.assert_allclose(np.asarray(shifted.loc), np.asarray(q.loc) + 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(shifted.scale), np.asarray(q.scale))


def test_mean_kl_gradients_are_finite_on_the_grid():
    kappa, ratio = (np.asarray(a, np.float32).ravel() for a in np.meshgrid(KAPPAS, MEAN_RATIOS))
    prior = jaxrec.DiagGaussian(jnp.zeros(kappa.size), jnp.full(kappa.size, 0.3))
    m = jnp.asarray(ratio * 0.3 * np.sqrt(2.0 * kappa))

    def total(m, kappa):
        q = bnn.mean_kl_gaussian(m, kappa, prior)
        return jnp.sum(q.loc) + jnp.sum(jnp.log(q.scale))

    grads = jax.grad(total, argnums=(0, 1))(m, jnp.asarray(kappa) + 1e-30)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_mean_kl_inverse_round_trips():
    kappa, ratio = (np.asarray(a, np.float32).ravel() for a in np.meshgrid(KAPPAS[1:], MEAN_RATIOS))
    prior = jaxrec.DiagGaussian(jnp.zeros(kappa.size), jnp.full(kappa.size, 0.37))
    q = bnn.mean_kl_gaussian(jnp.asarray(ratio * 0.37 * np.sqrt(2 * kappa)), jnp.asarray(kappa), prior)
    m, k = bnn.mean_kl_inverse(q, prior)
    again = bnn.mean_kl_gaussian(m, k, prior)
    np.testing.assert_allclose(np.asarray(k), kappa, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(again.loc), np.asarray(q.loc), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(again.scale), np.asarray(q.scale), rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# A small network and synthetic data

TINY = {"input_shape": (8, 8, 1), "conv": ((4, 3, 1),), "dense": ((16, 4), (3, 1)), "bits_per_block": 4.0, "block_size": 10}


def tiny(parameterization, **overrides):
    return bnn.BayesianNetwork(bnn.NetworkConfig(parameterization=parameterization, **{**TINY, **overrides}),
                               rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (256, 8, 8), dtype=np.uint8)
    teacher = rng.normal(size=(64, 3))
    labels = np.argmax((images.reshape(256, -1) / 255.0 - 0.5) @ teacher, axis=1).astype(np.int32)
    return images, labels


def test_network_layout_plan_and_hashing():
    net = tiny("mean_kl")
    # conv 3x3x1x4 + 4, dense 36x16 hashed in groups of 4 + 16, dense 16x3 + 3
    assert net.tensor_sizes == (36, 4, 144, 16, 48, 3) and net.num_variables == 251
    plan = net.plan
    assert list(plan.sizes) == [10] * 25 + [1] and plan.budget_bits == 4.0
    assert np.array_equal(plan.order, np.asarray(jax.random.permutation(jax.random.key(420), 251)))
    hashed = net.denses[0].kernel
    counts = np.bincount(np.asarray(hashed.hash_index.get_value()), minlength=144)
    assert np.all(counts == 4) and set(np.unique(np.asarray(hashed.hash_sign.get_value()))) == {-1.0, 1.0}
    # the decoder rebuilds the same tables from the seed; another seed gives others
    again, other = tiny("mean_var"), tiny("mean_kl", hash_seed=1)
    assert np.array_equal(again.denses[0].kernel.hash_index.get_value(), hashed.hash_index.get_value())
    assert not np.array_equal(other.denses[0].kernel.hash_index.get_value(), hashed.hash_index.get_value())
    w = hashed.expand(jnp.arange(144.0))
    assert w.shape == (36, 16) and np.array_equal(np.abs(np.asarray(w)).ravel(),
                                                  np.asarray(hashed.hash_index.get_value(), np.float32))


def test_mean_kl_blocks_spend_exactly_the_budget():
    net = tiny("mean_kl")
    loc, spread = net.flat_params()
    key = jax.random.key(1)
    spread = 3.0 * jax.random.normal(key, spread.shape)
    loc = 0.5 * jax.random.normal(jax.random.fold_in(key, 1), loc.shape)
    block_kl = np.asarray(net.block_kl(net.posterior_from(loc, spread)))
    np.testing.assert_allclose(block_kl, 4.0, rtol=2e-5)
    mean_var = tiny("mean_var")
    assert np.all(np.asarray(mean_var.block_kl(mean_var.posterior())) > 4.0)  # log sigma = -10: far over budget


def test_config_validation_and_round_trip():
    config = bnn.lenet5(parameterization="mean_var", bits_per_block=12)
    assert bnn.NetworkConfig.from_dict(config.to_dict()) == config
    for bad, match in (
        ({"parameterization": "mean"}, "parameterization must be one of"),
        ({"bits_per_block": 0}, "bits_per_block must be a number"),
        ({"block_size": 0}, "block_size must be an int >= 1"),
        ({"plan_seed": -1}, "plan_seed must be an int"),
        ({"dense": ()}, "at least one dense layer"),
        ({"input_shape": (2, 2, 1)}, "too small for the convolutions"),
    ):
        with pytest.raises(jaxrec.InvalidArgumentError, match=match):
            bnn.NetworkConfig(**{**TINY, **bad})


# ------------------------------------------------------------------------------------------------
# Training


def test_mean_var_penalty_follows_the_block_kl(data):
    net = tiny("mean_var", )
    before = np.asarray(net.kl_penalty.get_value())
    bnn.train(net, *data, steps=1, batch_size=32, penalty_step=2.0, progress=False)
    # every block is far over budget at log sigma = -10: all penalties doubled
    np.testing.assert_allclose(np.asarray(net.kl_penalty.get_value()), 2.0 * before)


@pytest.mark.slow  # three training runs: ~40 s on 2 cores
def test_training_resumes_exactly(tmp_path, data):
    images, labels = data
    straight, resumed = tiny("mean_kl"), tiny("mean_kl")
    kwargs = {"batch_size": 64, "learning_rate": 1e-2, "log_every": 5, "progress": False}
    history = bnn.train(straight, images, labels, steps=20, **kwargs)
    assert np.allclose(history.kl_mean_bits, 4.0, rtol=1e-4)
    path = tmp_path / "ckpt.msgpack"
    bnn.train(resumed, images, labels, steps=10, checkpoint=path, checkpoint_every=5, **kwargs)
    again = tiny("mean_kl")
    history_resumed = bnn.train(again, images, labels, steps=20, checkpoint=path, **kwargs)
    for a, b in zip(straight.flat_params(), again.flat_params()):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert history_resumed.step == history.step
    loaded, info = bnn.load_checkpoint(path)
    assert info["step"] == 20 and loaded.config == again.config
    np.testing.assert_array_equal(np.asarray(loaded.flat_params()[1]), np.asarray(again.flat_params()[1]))
    with pytest.raises(jaxrec.InvalidArgumentError, match="another network config"):
        bnn.train(tiny("mean_var"), images, labels, steps=21, checkpoint=path, **kwargs)
    with pytest.raises(jaxrec.InvalidArgumentError, match="other training settings"):
        bnn.train(tiny("mean_kl"), images, labels, steps=21, checkpoint=path, **{**kwargs, "learning_rate": 1e-3})


@pytest.mark.slow  # 3.4 s cold in the fast tier (a training run)
def test_pretrain_fits_the_means(data):
    net = tiny("mean_var")
    losses = bnn.pretrain(net, *data, steps=200, batch_size=64, learning_rate=1e-2, progress=False)
    assert losses[-1] < 0.8 * losses[0]
    assert bnn.evaluate(net, *data, net.flat_params()[0]) < 0.3


# ------------------------------------------------------------------------------------------------
# The codec, its retraining and the compressed file


@pytest.fixture(scope="module", params=["mean_kl", pytest.param("mean_var", marks=pytest.mark.slow)])
def codec(request, data):
    net = tiny(request.param)
    bnn.train(net, *data, steps=30, batch_size=64, learning_rate=1e-2, penalty_step=1.5, progress=False)
    return bnn.MiracleCodec(net, *data, retrain_steps=5, batch_size=32)


def sent_blocks(codec, blocks):
    fixed = np.zeros(codec.network.num_variables, bool)
    fixed[codec.plan.index[blocks][codec.plan.mask[blocks]]] = True
    return jnp.asarray(fixed)


def test_refine_never_moves_sent_weights(codec):
    q = codec.target(0)
    fixed = sent_blocks(codec, np.arange(0, 26, 2))
    z = jnp.where(fixed, q.sample(jax.random.key(5)), 0.0)
    refine = jax.jit(lambda codec, *args: codec.refine(*args))  # the codec as an argument, as jaxrec does
    refined = refine(codec, 0, q, z, fixed)
    for new, old in ((refined.loc, q.loc), (refined.scale, q.scale)):
        assert np.array_equal(np.asarray(new)[np.asarray(fixed)], np.asarray(old)[np.asarray(fixed)])
    assert np.abs(np.asarray(refined.loc - q.loc))[~np.asarray(fixed)].max() > 1e-4
    # the retraining sees the sent values: other values give another fit
    other = refine(codec, 0, q, jnp.where(fixed, z + 1.0, 0.0), fixed)
    assert not np.array_equal(np.asarray(other.loc), np.asarray(refined.loc))
    if codec.network.config.parameterization == "mean_kl":  # the unsent (odd) blocks keep their budget
        np.testing.assert_allclose(np.asarray(codec.network.block_kl(refined))[1::2], 4.0, rtol=1e-4)


def test_without_data_refine_is_the_identity(codec):
    decoder = bnn.MiracleCodec(codec.network)
    q = decoder.target(0)
    assert decoder.refine(0, q, jnp.zeros(251), jnp.zeros(251, bool)) is q


@pytest.mark.slow  # compress + decompress of 26 blocks with retraining: ~40 s on 2 cores
def test_compressed_network_round_trip_and_size(tmp_path, codec, data):
    images, labels = data
    coder = jaxrec.mrc(2**4)
    report = jaxrec.codec.compress_report(codec, jnp.zeros((1,), jnp.int32), key=11, coder=coder, plan=codec.plan)
    container = report.archive
    path = tmp_path / "net.jbnn"
    size = bnn.save_compressed(path, codec.network, container)
    assert size == path.stat().st_size
    bundle = bnn.load_bundle(path)
    assert bundle.name == "net" and bundle.item_shape == () and bundle.container == container
    # identical weights: the encoder's decode of its own file and the loaded bundle's
    z_encoder = np.asarray(jaxrec.decompress(codec, container, plan=codec.plan))
    z_file = np.asarray(bundle.weights())
    assert z_file.dtype == np.float32 and np.array_equal(z_file, z_encoder)
    assert bundle.error(images, labels) == bnn.evaluate(codec.network, images, labels, z_encoder)
    # size: 26 blocks x log2 N = 104 ideal bits; ANS pads to a 32-bit word; the rest is fixed
    index_bits = float(report.index_bits.sum())
    assert index_bits == 26 * 4
    assert 8 * report.payload_bytes <= index_bits + 32
    # the wrapper: format tag, field names, the config and 4 bytes per prior scale
    config_bytes = len(serialization.msgpack_serialize(list(codec.network.config.to_dict().values())))
    overhead = 48 + config_bytes + 4 * 6
    assert report.header_bytes <= 48 and size - len(container) <= overhead
    assert size <= math.ceil(index_bits / 8) + 4 + 48 + overhead


@pytest.mark.slow  # two progressive compressions with retraining: ~40 s on 2 cores
def test_progressive_compression_through_the_library(tmp_path, codec):
    x = jnp.zeros((1,), jnp.int32)
    coder = jaxrec.mrc(2**4)
    report = jaxrec.codec.compress_report(codec, x, key=5, coder=coder, plan=codec.plan, group_size=5)
    plain = jaxrec.codec.compress_report(bnn.MiracleCodec(codec.network), x, key=5, coder=coder, plan=codec.plan,
                                         group_size=5)  # no data: refine is the identity
    path = tmp_path / "net.jbnn"
    bnn.save_compressed(path, codec.network, report.archive)
    z = np.asarray(bnn.load_bundle(path).weights())
    assert np.array_equal(z, np.asarray(jaxrec.decompress(codec, report.archive, plan=codec.plan)))
    # the first group is coded before any retraining: its blocks match the plain encoder's
    z_plain = np.asarray(jaxrec.decompress(codec, plain.archive, plan=codec.plan))
    same = [np.array_equal(z[d], z_plain[d]) for d in (codec.plan.index[b][codec.plan.mask[b]] for b in range(26))]
    assert sum(same) >= 5
    # without data, progressive coding sends the codes of one-shot coding (the archives differ only in the
    # group table of their headers)
    one_shot = jaxrec.compress(bnn.MiracleCodec(codec.network), 0, key=5, coder=coder, plan=codec.plan)
    assert np.array_equal(z_plain, np.asarray(jaxrec.decompress(codec, one_shot, plan=codec.plan)))


def round_trip(codec, bundle_path, coder_name):
    """Compresses with the coder and plan the bundle's ``setup`` gives; returns (encoder z, file z)."""
    bnn.save_compressed(bundle_path, codec.network, b"")
    coder, plan = bnn.load_bundle(bundle_path).setup(coder_name)
    assert plan.order.tolist() == codec.plan.order.tolist()
    container = jaxrec.compress(codec, 0, key=3, coder=coder, plan=plan)
    bnn.save_compressed(bundle_path, codec.network, container)
    return jaxrec.decompress(codec, container, plan=plan), bnn.load_bundle(bundle_path).weights()


@pytest.mark.slow
@pytest.mark.parametrize("coder_name", ["orc", "sp_orc"])
def test_bundle_setup_other_coders(tmp_path, codec, coder_name):
    z_encoder, z_file = round_trip(codec, tmp_path / "net.jbnn", coder_name)
    assert np.array_equal(np.asarray(z_encoder), np.asarray(z_file))
    with pytest.raises(jaxrec.InvalidArgumentError, match="coder must be one of"):
        bnn.load_bundle(tmp_path / "net.jbnn").setup("gprs")
    with pytest.raises(jaxrec.InvalidArgumentError, match=r"this network is coded in \d+ blocks, got blocks=3"):
        bnn.load_bundle(tmp_path / "net.jbnn").setup(None, blocks=3)


@pytest.mark.slow
def test_bundle_pfr_on_a_bounded_ratio(tmp_path, data):
    # Mean-KL with zero mean parameters: every weight's KL is in its variance, D_inf stays bounded
    net = tiny("mean_kl")
    net.set_flat_params(jnp.zeros(net.num_variables), net.flat_params()[1])
    codec = bnn.MiracleCodec(net, *data, retrain_steps=1, batch_size=8)
    z_encoder, z_file = round_trip(codec, tmp_path / "net.jbnn", "pfr")
    assert np.array_equal(np.asarray(z_encoder), np.asarray(z_file))


def test_load_bundle_rejects_bad_files(tmp_path, codec):
    path = tmp_path / "net.jbnn"
    bnn.save_compressed(path, codec.network, b"\x89JXR")
    good = path.read_bytes()
    bad = tmp_path / "bad.jbnn"
    for data in (b"", b"\x00garbage", good[: len(good) // 2], good.replace(b"jaxrec-bnn-1", b"jaxrec-vae-1")):
        bad.write_bytes(data)
        with pytest.raises(jaxrec.FormatError):
            bnn.load_bundle(bad)
    bad.write_bytes(good)
    with pytest.raises(jaxrec.FormatError):
        bnn.load_bundle(bad).weights()  # a truncated container
    with pytest.raises(FileNotFoundError):
        bnn.load_bundle(tmp_path / "missing.jbnn")
    assert zlib.crc32(good) == zlib.crc32(path.read_bytes())
