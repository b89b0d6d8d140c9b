"""The Bayesian INR codec (COMBINER / RECOMBINER): model, prior learning, beta control, codec, files.

Everything runs on a tiny INR (16x16 images, one hidden layer of 8, a 1x1x4 positional grid:
D = 135 latents) so the file stays fast; the CIFAR-10 sizes are checked from the config alone.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import optimize

import jaxrec
from jaxrec import codec as jcodec
from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.models import inr

TINY = inr.InrConfig(
    image_shape=(16, 16, 3), hidden=(8,), fourier_dim=8, positional_channels=4, upsampler_hidden=4, positional_dim=4
)
KAPPA = 6.0


@pytest.fixture(scope="module")
def images():
    """Smooth random images (low-frequency colour fields), uint8 (6, 16, 16, 3)."""
    rng = np.random.default_rng(0)
    coarse = rng.uniform(0, 255, (6, 4, 4, 3))
    return np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2).astype(np.uint8)


@pytest.fixture(scope="module")
def fit(images):
    network = inr.InrNetwork(TINY, rngs=nnx.Rngs(0))
    schedule = inr.PriorSchedule(
        target_bpp=0.25, iterations=4, steps=10, first_steps=10, learning_rate=2e-3, beta_init=1e-3
    )
    return inr.learn_prior(network, images[:4], schedule, seed=1, progress=False)


@pytest.fixture(scope="module")
def settings():
    # One band and one scale cap for all three, so the codecs they bind share their compilations.
    return {
        "orc": inr.CoderSetting("orc", kappa=KAPPA, num_samples=2**8, max_scale_ratio=0.9),
        "sp_orc": inr.CoderSetting("sp_orc", kappa=KAPPA, num_samples=2**4, partition_offset=-4, max_scale_ratio=0.9),
        "sp_pfr": inr.CoderSetting("sp_pfr", kappa=KAPPA, max_steps=2**16, partition_offset=-2, max_scale_ratio=0.9),
    }


@pytest.fixture(scope="module")
def prior_file(tmp_path_factory, fit, settings):
    path = tmp_path_factory.mktemp("inr") / "tiny-inr.msgpack"
    inr.save_prior(
        path, fit, settings, fit_settings=inr.FitSettings(30, 2e-3), refine_settings=inr.FitSettings(5, 2e-3),
        metadata={"note": "test"},
    )
    return path


@pytest.fixture(scope="module")
def bundle(prior_file):
    return inr.load_bundle(prior_file)


# ------------------------------------------------------------------------------------------------
# Model


def test_latent_sizes_of_the_cifar10_models():
    assert inr.recombiner().layer_sizes == (1056, 1056, 1056, 99)
    assert inr.recombiner().latent_size == 3267 + 512  # SIREN latents + the 2x2x128 grid
    assert inr.combiner().latent_size == 544 + 1056 + 1056 + 99
    assert inr.combiner().max_group_size is None and not inr.combiner().positional
    assert inr.InrConfig.from_dict(inr.recombiner().to_dict()) == inr.recombiner()
    with pytest.raises(InvalidArgumentError, match="multiple"):
        inr.InrConfig(image_shape=(24, 24, 3))


def test_fourier_features_are_cos_sin_of_log_spaced_frequencies():
    feats = inr.fourier_features(inr.recombiner())
    assert feats.shape == (1024, 16)
    # pixel (0, 1): coordinates (-31/32, -29/32); frequencies 1, 1024^(1/3), 1024^(2/3), 1024
    freqs = 1024.0 ** (np.arange(4) / 3)
    phases = np.concatenate([-31 / 32 * freqs, -29 / 32 * freqs])
    np.testing.assert_allclose(feats[1], np.concatenate([np.cos(np.pi * phases), np.sin(np.pi * phases)]), atol=1e-4)


def test_conv_same_matches_lax_convolution():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k1, (8, 8, 5))
    kernel = jax.random.normal(k2, (5, 5, 5, 3))
    bias = jax.random.normal(k3, (3,))
    expected = jax.lax.conv_general_dilated(
        x[None], kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )[0] + bias
    got = inr.conv_same(x, kernel, bias).reshape(8, 8, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_render_layout_and_shapes():
    network = inr.InrNetwork(TINY, rngs=nnx.Rngs(0))
    h = jax.random.normal(jax.random.key(1), (TINY.latent_size,)) * 0.1
    assert network.render(h).shape == (16, 16, 3)
    (w0, b0), (w1, b1) = network.layer_params(h)
    assert w0.shape == (12, 8) and b0.shape == (8,) and w1.shape == (8, 3) and b1.shape == (3,)
    # without the linear reparameterization the first d_out entries are the bias, then W row-major
    plain = inr.InrNetwork(inr.InrConfig(**{**TINY.to_dict(), "linear_reparam": False}), rngs=nnx.Rngs(0))
    (w0, b0), _ = plain.layer_params(h)
    np.testing.assert_array_equal(b0, h[:8])
    np.testing.assert_array_equal(w0, h[8 : 8 + 96].reshape(12, 8))


def test_linear_reparameterization_covariance_is_a_t_diag_sigma2_a():
    """w_l = h_l A_l with h ~ N(mu, diag s^2): Cov(w_l) = A_l^T diag(s^2) A_l, read through the
    network's own layer map (its Jacobian) and checked by Monte Carlo."""
    network = inr.InrNetwork(TINY, rngs=nnx.Rngs(3))
    p0 = TINY.layer_sizes[0]
    a = np.asarray(network.mixing[0].get_value(), np.float64)
    scale = np.asarray(jax.random.uniform(jax.random.key(2), (TINY.latent_size,), minval=0.5, maxval=2.0))

    def first_layer(h):
        w, b = network.layer_params(h)[0]
        return jnp.concatenate([b, w.reshape(-1)])  # the flat layer vector: bias, then W row-major

    jac = np.asarray(jax.jacobian(first_layer)(jnp.zeros(TINY.latent_size)), np.float64)
    np.testing.assert_allclose(jac[:, :p0], a.T, rtol=1e-6, atol=1e-9)
    assert not jac[:, p0:].any()
    expected = a.T @ np.diag(scale[:p0] ** 2) @ a
    np.testing.assert_allclose(jac @ np.diag(scale**2) @ jac.T, expected, rtol=1e-6, atol=1e-12)
    n = 20000
    h = jax.random.normal(jax.random.key(4), (n, TINY.latent_size)) * scale
    w = np.asarray(jax.vmap(first_layer)(h), np.float64)
    empirical = w.T @ w / n  # zero mean
    # each entry's standard error is sqrt((C_ii C_jj + C_ij^2) / n)
    stderr = np.sqrt((np.outer(np.diag(expected), np.diag(expected)) + expected**2) / n)
    assert np.max(np.abs(empirical - expected) / stderr) < 6.0


# ------------------------------------------------------------------------------------------------
# Prior learning


def test_closed_form_prior_minimizes_the_summed_kl():
    rng = np.random.default_rng(5)
    loc = rng.normal(0.3, 0.7, (7, 3))
    scale = rng.uniform(0.1, 1.0, (7, 3))
    got = inr.closed_form_prior(jnp.asarray(loc), jnp.asarray(scale))
    for d in range(3):

        def summed_kl(params, d=d):
            mu, log_sigma = params
            s2 = np.exp(2 * log_sigma)
            return np.sum(log_sigma - np.log(scale[:, d]) + (scale[:, d] ** 2 + (loc[:, d] - mu) ** 2) / (2 * s2) - 0.5)

        best = optimize.minimize(summed_kl, x0=[0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12})
        np.testing.assert_allclose(float(got.loc[d]), best.x[0], atol=1e-5)
        np.testing.assert_allclose(float(got.scale[d]), np.exp(best.x[1]), rtol=1e-5)


def test_learn_prior_records_the_statistics(fit, images):
    dim = TINY.latent_size
    assert fit.prior.event_size == dim and fit.init_rho.shape == (dim,) and fit.kl_per_dim.shape == (dim,)
    assert fit.kl_per_dim.dtype == np.float64 and np.all(fit.kl_per_dim >= 0)
    assert len(fit.history) == 4 and fit.beta > 0
    # the closed-form M-step minimizes the summed KL: the final mean KL is at most the E-step's
    assert fit.kl_per_dim.sum() <= fit.history[-1]["kl_bits"] * (1 + 1e-5)
    # the M-step ran after the last E-step: the prior is the closed form of the final posteriors
    expected = inr.closed_form_prior(fit.loc, inr.posterior_scale(fit.rho))
    np.testing.assert_allclose(fit.prior.scale, expected.scale, rtol=1e-6)
    with pytest.raises(InvalidArgumentError, match="uint8"):
        inr.learn_prior(fit.network, images.astype(np.float32), inr.PriorSchedule(1.0, 1, 1, 1), progress=False)


# ------------------------------------------------------------------------------------------------
# Beta control


def test_adjust_beta_steps_outside_the_band_only():
    beta = jnp.array([1.0, 1.0, 1.0, 1e4])
    kl_bits = jnp.array([17.0, 15.8, 10.0, 20.0])
    out = inr.adjust_beta(beta, kl_bits, 15.6, 16.0, 1.05, 1e4)
    np.testing.assert_allclose(out, [1.05, 1.0, 1 / 1.05, 1e4], rtol=1e-6)


def test_beta_controller_holds_each_group_in_its_band():
    """A conjugate toy: distortion sum_d c_d (h_d - t_d)^2 under the prior N(0, 1), so each
    group's KL at a given beta is known in closed form (precision 1 + 2 c / beta). Group 0 starts
    far above the 12-bit band, group 1 below it; both end inside [11.6, 12], at about the analytic
    beta. Group 2 is coded (fixed at z): it keeps z, carries no KL and its beta is 0."""
    rng = np.random.default_rng(0)
    t = rng.normal(0.0, 1.0, 60)
    c = np.repeat([3e3, 1.0, 5.0], 20)
    groups = inr.Groups(jnp.asarray(np.repeat(np.arange(3, dtype=np.int32), 20)), 3)
    fixed = np.arange(60) >= 40
    z = np.where(fixed, rng.normal(0.0, 1.0, 60), 0.0)
    prior = jaxrec.DiagGaussian(jnp.zeros(60), jnp.ones(60))

    def kl_bits(beta, group):
        part = slice(20 * group, 20 * group + 20)
        var = 1.0 / (1.0 + 2.0 * c[part] / beta)
        mean = t[part] * (2.0 * c[part] / beta) * var
        return np.sum(-0.5 * np.log(var) + (var + mean**2 - 1.0) / 2.0) / np.log(2.0)

    assert kl_bits(1.0, 0) > 100 and kl_bits(1.0, 1) < 11
    band = inr.Band(kappa=12.0)  # [11.6, 12] bits, x1.05 every 10 steps
    distortion = lambda h: jnp.sum(jnp.asarray(c) * (h - jnp.asarray(t)) ** 2)
    loc, rho, beta = jax.jit(
        lambda: inr.fit_posterior(
            distortion, prior, jnp.zeros(60), jnp.zeros(60), jnp.ones(3), groups, band,
            inr.FitSettings(3000, 1e-2, num_samples=4, final_lr_fraction=0.1), jax.random.key(0),
            jnp.asarray(fixed), jnp.asarray(z),
        )
    )()
    q = jaxrec.DiagGaussian(jnp.where(fixed, z, loc), jnp.where(fixed, 1.0, inr.posterior_scale(rho)))
    got = np.asarray(inr.group_kl_bits(jaxrec.kl(q, prior, per_dim=True), groups))
    assert np.all((got[:2] > 11.6 - 0.1) & (got[:2] < 12.0 + 0.1)), got
    for g in range(2):
        analytic = optimize.brentq(lambda b, g=g: kl_bits(b, g) - 11.8, 1e-6, 1e8)
        assert 1 / 1.3 < float(beta[g]) / analytic < 1.3, (g, float(beta[g]), analytic)
    assert float(beta[2]) == 0.0
    np.testing.assert_array_equal(np.asarray(loc)[fixed], np.zeros(20))  # untouched: no gradient reaches them


# ------------------------------------------------------------------------------------------------
# Codec


@pytest.mark.slow  # 6 s cold in the fast tier (the refine program)
def test_refine_moves_only_free_coordinates_and_keeps_the_fixed_values(bundle, images):
    bundle.setup("orc")
    codec = bundle.codec
    x = jnp.asarray(images[4])
    q = codec.target(x)
    fixed = jnp.asarray(np.arange(TINY.latent_size) % 3 == 0)
    z = jnp.where(fixed, q.loc + 0.5 * q.scale, 0.0)
    out = jax.jit(codec.refine)(x, q, z, fixed)
    np.testing.assert_array_equal(np.asarray(out.loc)[np.asarray(fixed)], np.asarray(z)[np.asarray(fixed)])
    assert not np.allclose(np.asarray(out.loc)[~np.asarray(fixed)], np.asarray(q.loc)[~np.asarray(fixed)])
    assert np.all(np.isfinite(out.loc)) and np.all(out.scale > 0)


def at(tree, *index):
    return jax.tree.map(lambda a: a[index], tree)


def encoder_latent(code, item, plan, coder, prior, key):
    """The latent the encoder chose for ``item``: every block's candidate regenerated from its code
    (candidate n is a pure function of the block key and n), in one jitted call."""
    _, prior_blocks = plan.split(prior, prior)
    item_key = jaxrec.core.prng.fold_in_index(jaxrec.core.prng.as_key(key), item)
    keys = jax.vmap(lambda b: jaxrec.core.prng.fold_in_index(item_key, b))(jnp.arange(plan.num_blocks, dtype=jnp.uint32))
    if isinstance(coder, jaxrec.Coder):
        decode = lambda k, c, p, part: coder.decode(k, c, p)
    else:  # a partition -> Coder callable
        decode = lambda k, c, p, part: coder(part).decode(k, c, p)
    blocks = jax.jit(jax.vmap(decode))(keys, at(code, item), prior_blocks, plan.partitions)
    return plan.merge(blocks)


@pytest.mark.parametrize(
    "name, group_size",
    [  # every case compiles an INR encoder and decoder: ~35 s each on 2 cores
        pytest.param("orc", 1, marks=pytest.mark.slow),
        pytest.param("sp_orc", 2, marks=pytest.mark.slow),
        pytest.param("sp_pfr", 2, marks=pytest.mark.slow),
    ],
)
def test_round_trip_through_bytes_and_decoder_matches_encoder(bundle, images, name, group_size):
    """Progressive coding (``group_size`` blocks per item and step, largest KL first) into one
    archive; every item decodes alone and in the batch to the encoder's own reconstruction."""
    coder, plan = bundle.setup(name)
    codec = bundle.codec
    xs = images[4:6]
    report = jcodec.compress_report(
        codec, xs, key=11, coder=coder, plan=plan, devices=jax.devices()[:1], group_size=group_size
    )
    decoded = np.asarray(jaxrec.decompress_batch(codec, report.archive, plan=plan, devices=jax.devices()[:1]))
    assert decoded.shape == xs.shape and decoded.dtype == np.uint8
    single = np.asarray(jaxrec.decompress(codec, report.archive, plan=plan, item=1))
    np.testing.assert_array_equal(single, decoded[1])
    # the encoder's reconstruction: its own candidates, rebuilt from the codes (block b of item i
    # uses fold_in(fold_in(key, i), b)) and rendered one item at a time
    for i in range(len(xs)):
        z = encoder_latent(report.code, i, plan, coder, codec.prior(), key=11)
        np.testing.assert_array_equal(np.asarray(jax.jit(codec.reconstruct)(z)), decoded[i])
    # the rate: ORC sends log2 N bits per block, SP coders the bins plus the index
    assert report.payload_bytes > 0 and report.total_bytes == len(report.archive)
    if name == "orc":
        np.testing.assert_allclose(report.index_bits, 8.0 * plan.num_blocks, rtol=1e-6)


@pytest.mark.slow
def test_command_line_round_trip_through_pngs(prior_file, bundle, images, tmp_path):
    """``jaxrec compress --model PRIOR_FILE a.png b.png -o x.jxr`` and ``jaxrec decompress x.jxr
    --model PRIOR_FILE -o out/``: the PNGs out are the library's decoding of the same archive."""
    from PIL import Image

    from jaxrec import cli

    paths = []
    for i in (4, 5):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(images[i]).save(paths[-1])
    archive = tmp_path / "x.jxr"
    assert cli.main(["compress", "--model", str(prior_file), *map(str, paths), "-o", str(archive), "-q"]) == 0
    # the archive names its model ("tiny-inr crc32=..."); a model that is not packaged is passed again
    assert cli.main(["decompress", str(archive), "-o", str(tmp_path / "out"), "-q"]) == 1
    assert cli.main(["decompress", str(archive), "--model", str(prior_file), "-o", str(tmp_path / "out"), "-q"]) == 0
    out = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "out").glob("*.png"))])
    _, plan = bundle.setup()
    np.testing.assert_array_equal(out, jaxrec.decompress_batch(bundle.codec, archive.read_bytes(), plan=plan))


# ------------------------------------------------------------------------------------------------
# Prior files and bundles


def test_bundle_setup_is_deterministic_and_binds_the_codec(bundle, prior_file, settings):
    assert bundle.name == "tiny-inr" and bundle.item_shape == (16, 16, 3) and bundle.item_dtype == np.uint8
    coder, plan = bundle.setup()
    assert isinstance(coder, jaxrec.Coder) and coder.spec.name == "orc"
    assert bundle.codec.num_groups == plan.num_blocks and bundle.codec.band.kappa == KAPPA
    again = inr.load_bundle(prior_file)
    for name in settings:
        assert again.setup(name)[1].fingerprint == bundle.setup(name)[1].fingerprint
    _, plan = bundle.setup("sp_orc", blocks=2)
    assert plan.num_blocks == 2 and plan.partitions is not None
    assert bundle.codec.num_groups == 2 and bundle.codec.band.kappa == KAPPA
    assert again.setup("sp_orc", blocks=2)[1].fingerprint == plan.fingerprint
    _, plan = bundle.setup("sp_pfr")
    assert bundle.codec.fit_settings.max_scale_ratio == 0.9
    with pytest.raises(InvalidArgumentError, match="coder"):
        bundle.setup("pfr")
    with pytest.raises(InvalidArgumentError, match="blocks"):
        bundle.setup("orc", blocks=0)


def test_prior_files_load_through_the_model_registry(prior_file):
    loaded = jaxrec.models.load(prior_file)
    assert isinstance(loaded, inr.InrBundle) and loaded.name == "tiny-inr"
    assert loaded.codec.item_shape == (16, 16, 3)


def test_loaded_prior_equals_the_saved_one(bundle, fit):
    np.testing.assert_array_equal(bundle.codec.prior().loc, np.asarray(fit.prior.loc, np.float32))
    np.testing.assert_array_equal(bundle.kl_per_dim, fit.kl_per_dim)
    h = jnp.asarray(fit.loc[0])
    np.testing.assert_array_equal(bundle.codec.network.render(h), fit.network.render(h))
    assert bundle.metadata == {"note": "test"}


def test_float16_weights_halve_the_network(tmp_path, fit, settings):
    small = inr.save_prior(
        tmp_path / "f16.msgpack", fit, settings, fit_settings=inr.FitSettings(3), refine_settings=inr.FitSettings(1),
        weights_dtype="float16",
    )
    full = inr.save_prior(
        tmp_path / "f32.msgpack", fit, settings, fit_settings=inr.FitSettings(3), refine_settings=inr.FitSettings(1)
    )
    assert small < full
    loaded = inr.load_bundle(tmp_path / "f16.msgpack")
    a = np.asarray(loaded.codec.network.mixing[0].get_value())
    np.testing.assert_array_equal(a, np.asarray(fit.network.mixing[0].get_value()).astype(np.float16).astype(np.float32))


def test_malformed_prior_files_raise_format_error(tmp_path, prior_file):
    with pytest.raises(FileNotFoundError):
        inr.load_bundle(tmp_path / "missing.msgpack")
    raw = prior_file.read_bytes()
    for i, data in enumerate([b"not msgpack at all", raw[: len(raw) // 2], raw.replace(b"jaxrec-inr-1", b"jaxrec-vae-1")]):
        path = tmp_path / f"bad{i}.msgpack"
        path.write_bytes(data)
        with pytest.raises(FormatError):
            inr.load_bundle(path)
    from flax import serialization

    blob = serialization.msgpack_restore(raw)
    blob["prior_loc"] = blob["prior_loc"][:-1]
    (tmp_path / "short.msgpack").write_bytes(serialization.msgpack_serialize(blob))
    with pytest.raises(FormatError, match="shape"):
        inr.load_bundle(tmp_path / "short.msgpack")
    blob = serialization.msgpack_restore(raw)
    del blob["coders"]
    (tmp_path / "nocoders.msgpack").write_bytes(serialization.msgpack_serialize(blob))
    with pytest.raises(FormatError, match="malformed"):
        inr.load_bundle(tmp_path / "nocoders.msgpack")


def test_coder_settings_are_validated():
    with pytest.raises(InvalidArgumentError, match="num_samples"):
        inr.CoderSetting("orc", kappa=16.0)
    with pytest.raises(InvalidArgumentError, match="kind"):
        inr.CoderSetting("pfr", kappa=16.0)
    with pytest.raises(InvalidArgumentError, match="max_scale_ratio"):
        inr.CoderSetting("sp_pfr", kappa=16.0, max_steps=10, max_scale_ratio=1.5)
    assert isinstance(inr.CoderSetting("sp_orc", 32.0, num_samples=16).coder(), functools.partial)
