"""Test configuration.

Four virtual CPU devices, so that sharded (multi-device) code paths are exercised on any machine;
the flag must be set before JAX initialises its backends, hence here, before any test imports jax.

Compiled programs are kept on disk between runs (JAX's persistent compilation cache, in
``$JAXREC_TEST_CACHE``, default ``~/.cache/jaxrec-tests``; tens of MB): compilation dominates the
suite on CPU, so a rerun on the same machine takes a third of the time of the first run (the
entries are keyed by the program, the JAX version and the XLA flags; delete the folder to start
cold).  Every program is kept, however fast it compiled: the eager operations of the tests (each a
program of its own, compiled again in every test module after ``jax.clear_caches``) are most of
what a warm run would otherwise still compile (fast tier, 2 cores: 1 min 22 s warm against 2 min
17 s with only the programs above 0.2 s kept).

The fast tier (a mark expression with ``not slow``) compiles with XLA's LLVM backend at -O0
(``--xla_backend_optimization_level=0``; XLA's own HLO optimizations are unchanged): compilation
is most of a cold fast-tier run and its programs run for milliseconds (cold, 2 idle cores: 2 min
43-48 s against 3 min 17 s-3 min 54 s).  The full suite (CI) compiles at the default level, as users do: its
statistical tests run long enough that -O0 saves nothing there (19 min 45 s against 20 min 42 s).
Floats computed by the two levels may differ in the last bits (``test_golden_first_candidates``).
"""

import os
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.environ.get("JAXREC_TEST_CACHE", str(Path.home() / ".cache" / "jaxrec-tests")),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

from hypothesis import settings  # noqa: E402

# Property tests draw a fixed sequence of examples, so CI is reproducible (a failure found by a
# random search would otherwise appear on one run and not the next).
settings.register_profile("jaxrec", derandomize=True, deadline=None)
settings.load_profile("jaxrec")


import jax  # noqa: E402
import pytest  # noqa: E402

FAST_TIER_XLA_FLAG = "--xla_backend_optimization_level=0"


def pytest_configure(config):
    """Adds :data:`FAST_TIER_XLA_FLAG` to ``XLA_FLAGS`` for the fast tier (``-m "not slow..."``),
    unless ``XLA_FLAGS`` already sets a level.  JAX reads ``XLA_FLAGS`` when it first initialises
    its CPU backend, which no import does, so here is early enough (xdist workers inherit it)."""
    flags = os.environ["XLA_FLAGS"]
    if "not slow" in (config.option.markexpr or "") and "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FAST_TIER_XLA_FLAG}"


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drops JAX's compilation caches after each test module.

    The suite compiles a few thousand programs; keeping them all alive in one process grows its
    memory for the whole run (and a crash inside XLA's compiler was seen late in a CI run).  No
    test shares compiled functions across modules, so nothing is recompiled more than before.
    """
    yield
    jax.clear_caches()
