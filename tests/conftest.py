"""Test configuration.

Four virtual CPU devices, so that sharded (multi-device) code paths are exercised on any machine;
the flag must be set before JAX initialises its backends, hence here, before any test imports jax.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from hypothesis import settings  # noqa: E402

# Property tests draw a fixed sequence of examples, so CI is reproducible (a failure found by a
# random search would otherwise appear on one run and not the next).
settings.register_profile("jaxrec", derandomize=True, deadline=None)
settings.load_profile("jaxrec")


import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drops JAX's compilation caches after each test module.

    The suite compiles a few thousand programs; keeping them all alive in one process grows its
    memory for the whole run (and a crash inside XLA's compiler was seen late in a CI run).  No
    test shares compiled functions across modules, so nothing is recompiled more than before.
    """
    yield
    jax.clear_caches()
