"""Fits the polynomials of :mod:`jaxrec.core.normal_quantile` and prints them with their errors.

    python tools/fit_normal_quantile.py          # the coefficients (float32) and the fits' errors
    python tools/fit_normal_quantile.py --check  # also the float32 function's error on dense t grids

The function approximated is ``h(w) = -Phi^{-1}(t) / (1 - 2t)`` of ``w = -log(4 t (1 - t))``,
``t in (0, 1/2]`` (``h = sqrt(2) erfinv(x) / x`` of ``x = 1 - 2t``, the form of Giles, "Approximating
the erfinv function", GPU Computing Gems Jade Edition, 2011): on each branch a polynomial in a shifted
variable, fitted in float64 by least squares on the relative error, reweighted (Lawson's iteration)
toward the minimax fit. The branches and degrees are those of the module; run this after changing them
and paste the printed constants into it.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import special

BRANCHES = (
    # (w from, w to, variable, degree): "w" = w - c, "v" = 1/sqrt(w) - c (then h = sqrt(w) g)
    (0.0, 8.0, "w", 10),
    (8.0, 88.0, "v", 8),  # w = 88: t = 6e-40, below float32's smallest normal
)


def h_of_w(w: np.ndarray) -> np.ndarray:
    """``-Phi^{-1}(t) / (1 - 2t)`` at ``4 t (1 - t) = e^-w``, in float64, with ``1 - 2t = sqrt(1 - e^-w)``."""
    root = np.sqrt(-np.expm1(-w))
    t = np.exp(-w) / (2.0 * (1.0 + root))
    return -special.ndtri(t) / root


def fit_branch(lo: float, hi: float, variable: str, degree: int, points: int = 6000, rounds: int = 60):
    """``(center, coefficients highest power first, max relative error of the float64 fit)``."""
    w = np.linspace(max(lo, 1e-9), hi, points)
    y = h_of_w(w)
    if variable == "w":
        v = w
    else:
        v, y = 1.0 / np.sqrt(w), y / np.sqrt(w)
    center = float(np.float32((v.min() + v.max()) / 2))
    basis = np.vander(v - center, degree + 1)
    weight = 1.0 / np.abs(y)
    for _ in range(rounds):
        coef, *_ = np.linalg.lstsq(basis * weight[:, None], y * weight, rcond=None)
        rel = (basis @ coef - y) / y
        weight = weight * (1.0 + 50.0 * np.abs(rel) / np.abs(rel).max())
    return center, coef, float(np.abs(rel).max())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="measure the float32 function on dense grids")
    args = parser.parse_args(argv)
    for lo, hi, variable, degree in BRANCHES:
        center, coef, err = fit_branch(lo, hi, variable, degree)
        literals = ", ".join(repr(float(np.float32(c))) for c in coef)
        print(f"# w in [{lo}, {hi}), {variable}, degree {degree}: fit max relative error {err:.2e}")
        print(f"center = {center!r}\ncoefficients = ({literals})")
    if args.check:
        import jax.numpy as jnp

        from jaxrec.core.normal_quantile import ndtri_lower_tail

        rng = np.random.default_rng(0)
        t = np.concatenate([
            np.exp(rng.uniform(np.log(np.finfo(np.float32).tiny), np.log(0.5), 2_000_000)),
            rng.uniform(0.0, 0.5, 2_000_000),
        ]).astype(np.float32)
        t = t[t > 0]
        ref = special.ndtri(t.astype(np.float64))
        got = np.asarray(ndtri_lower_tail(jnp.asarray(t)), np.float64)
        rel = np.abs(got - ref) / np.abs(ref)
        print(f"float32 function: max relative error {rel.max():.2e} over {t.size} t in [tiny, 1/2)")


if __name__ == "__main__":
    main()
