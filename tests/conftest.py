"""Test configuration.

Four virtual CPU devices, so that sharded (multi-device) code paths are exercised on any machine;
the flag must be set before JAX initialises its backends, hence here, before any test imports jax.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
