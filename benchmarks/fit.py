"""Benchmark of kvv.fit against pyhf on the published Belle II B -> K nu nu likelihood.

Times the MLE, the discovery significance and the 90 % CL CLs upper limit with
kvv (jitted JAX NLL + analytic gradients), with pyhf's JAX backend (pyhf jit-compiles
its NLL and gradient there; scipy optimiser, and minuit for the MLE's uncertainties)
and with plain pyhf (numpy backend + iminuit), in one invocation.

    python benchmarks/fit.py                # kvv, pyhf-JAX (limit: several minutes), plain-pyhf MLE and significance
    python benchmarks/fit.py --plain-limit  # also the plain-pyhf limit (slow: many minutes)

and the toy fits of the injection study on a default run's workspace, with kvv's
own NLL and with pyhf's ``logpdf`` under kvv's optimisers (``--toys``).

pyhf's ``toms748_scan`` fails on the JAX backend (it hashes a JAX array), so the
pyhf-JAX limit is scipy's ``toms748`` on pyhf's own ``hypotest`` (qtilde), CLs = 0.10,
with the relative tolerance kvv's limit uses.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import pyhf

WORKSPACE = Path(__file__).resolve().parents[1] / "tests" / "data" / "belle2_bknunu_combined_likelihood.json"
#: a default run's workspace, on which the injection study's toys are timed
DEFAULT_WORKSPACE = WORKSPACE.with_name("ita2021_default_workspace.json")


def _timed(fn):
    start = time.perf_counter()
    try:
        value = fn()
        error = None
    except Exception as exc:  # plain pyhf is expected to fail on some steps
        value, error = None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return value, time.perf_counter() - start, error


def run_kvv(spec: dict) -> dict:
    """Time kvv's MLE, significance and limit; the first MLE includes JIT warm-up."""
    from kvv.fit import Likelihood, mle, significance, upper_limit

    out = {}
    lh, t_build, _ = _timed(lambda: Likelihood.from_workspace(spec))
    out["build"] = {"seconds": t_build}
    res, t, err = _timed(lambda: mle(lh, minos=False))
    out["warmup_mle"] = {"seconds": t, "error": err}
    res, t, err = _timed(lambda: mle(lh, minos=False))
    out["mle"] = {
        "seconds": t,
        "mu": res.bestfit[lh.poi_index] if res else None,
        "sigma": res.uncertainty[lh.poi_index] if res else None,
        "optimizer": res.optimizer if res else None,
        "error": err,
    }
    res, t, err = _timed(lambda: mle(lh, minos=True))
    out["mle_minos"] = {"seconds": t, "minos": res.minos[lh.poi_name] if res else None, "error": err}
    sig, t, err = _timed(lambda: significance(lh))
    out["significance"] = {"seconds": t, "Z": sig.Z_obs if sig else None, "error": err}
    lim, t, err = _timed(lambda: upper_limit(lh, cl=0.90))
    out["limit90"] = {"seconds": t, "mu_up": lim.observed if lim else None, "error": err}
    return out


def run_plain(spec: dict, with_limit: bool = False) -> dict:
    """Time the same steps with plain pyhf (numpy backend, minuit optimiser)."""
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(verbose=0))
    ws = pyhf.Workspace(spec)
    model = ws.model()
    data = ws.data(model)
    out = {}
    res, t, err = _timed(lambda: pyhf.infer.mle.fit(data, model, return_uncertainties=True))
    out["mle"] = {"seconds": t, "mu": float(res[model.config.poi_index, 0]) if res is not None else None, "error": err}

    def discovery_z():
        from scipy.stats import norm

        p0 = pyhf.infer.hypotest(0.0, data, model, test_stat="q0")
        return float(norm.isf(float(p0)))

    res, t, err = _timed(discovery_z)
    out["significance"] = {"seconds": t, "Z": res, "error": err}
    if with_limit:
        res, t, err = _timed(lambda: pyhf.infer.intervals.upper_limits.toms748_scan(data, model, 0.0, 10.0, level=0.10, rtol=1e-3))
        out["limit90"] = {"seconds": t, "mu_up": float(res[0]) if res is not None else None, "error": err}
    else:
        out["limit90"] = {"seconds": None, "mu_up": None, "error": "skipped (use --plain-limit)"}
    return out


def run_pyhf_jax(spec: dict, with_limit: bool = True) -> dict:
    """Time the same steps with pyhf's JAX backend; the first MLE includes pyhf's JIT warm-up."""
    from scipy import optimize
    from scipy.stats import norm

    pyhf.set_backend("jax", pyhf.optimize.scipy_optimizer())
    ws = pyhf.Workspace(spec)
    model = ws.model()
    data = pyhf.tensorlib.astensor(ws.data(model))
    poi = model.config.poi_index
    out = {}
    _, t, err = _timed(lambda: pyhf.infer.mle.fit(data, model))
    out["warmup_mle"] = {"seconds": t, "error": err}
    res, t, err = _timed(lambda: pyhf.infer.mle.fit(data, model))
    out["mle_scipy"] = {"seconds": t, "mu": float(res[poi]) if res is not None else None, "error": err}  # no uncertainties
    pyhf.set_backend("jax", pyhf.optimize.minuit_optimizer(verbose=0))
    _timed(lambda: pyhf.infer.mle.fit(data, model, return_uncertainties=True))  # minuit's own warm-up
    res, t, err = _timed(lambda: pyhf.infer.mle.fit(data, model, return_uncertainties=True))
    out["mle"] = {
        "seconds": t,
        "mu": float(res[poi, 0]) if res is not None else None,
        "sigma": float(res[poi, 1]) if res is not None else None,
        "error": err,
    }
    pyhf.set_backend("jax", pyhf.optimize.scipy_optimizer())
    res, t, err = _timed(lambda: float(norm.isf(float(pyhf.infer.hypotest(0.0, data, model, test_stat="q0")))))
    out["significance"] = {"seconds": t, "Z": res, "error": err}
    if with_limit:
        calls = []

        def cls_minus_level(mu: float) -> float:
            calls.append(mu)
            return float(pyhf.infer.hypotest(mu, data, model, test_stat="qtilde")) - 0.10

        res, t, err = _timed(lambda: optimize.toms748(cls_minus_level, 0.5, 10.0, rtol=1e-3))
        out["limit90"] = {"seconds": t, "mu_up": float(res) if res is not None else None, "hypotests": len(calls), "error": err}
        out["limit90"]["seconds_per_hypotest"] = t / max(len(calls), 1)
    else:
        out["limit90"] = {"seconds": None, "mu_up": None, "error": "skipped"}
    pyhf.set_backend("numpy")
    return out


def _injection_one_by_one(lh, mu_values: list[float], n_toys: int, seed: int) -> None:
    """The injection study's fits toy by toy with the optimiser chain (kvv before the batched fits), the baseline."""
    import numpy as np

    from kvv.fit.optimize import Curvature, minimize

    rng = np.random.default_rng(seed)
    poi = lh.poi_index
    for mu in mu_values:
        truth = lh.init.copy()
        truth[poi] = mu
        expected = Curvature.at(lh, truth, lh.expected_data(truth))
        for _ in range(n_toys):
            data = lh.toy(truth, rng)
            free = minimize(lh, data, init=truth, curvature=expected)
            own = Curvature.at(lh, free.x, data)
            minimize(lh, data, init=truth, fixed={poi: mu}, curvature=own)


def run_toys(n_toys: int) -> dict:
    """Toys per second of the injection study on the default workspace, each toy a free fit, a fit at the
    injected POI and a Hessian: batched (kvv's own NLL, and pyhf's ``logpdf``) against one by one.

    The injection study widens the POI range; the one-by-one baseline uses the same range. A first call of a
    few toys compiles.
    """
    from kvv.fit import Likelihood, injection_study

    mu_values = [1.0, 5.0]
    out = {"workspace": DEFAULT_WORKSPACE.name, "toys": len(mu_values) * n_toys}
    for name, native in (("kvv", True), ("kvv_on_pyhf_logpdf", False)):
        lh = Likelihood.from_workspace(DEFAULT_WORKSPACE, native=native)
        injection_study(lh, [1.0], 3, seed=1)
        summary, t, err = _timed(lambda lh=lh: injection_study(lh, mu_values, n_toys, seed=2))
        out[name] = {
            "seconds": t,
            "toys_per_s": out["toys"] / t,
            "pull_width": [s["pull_width"] for s in summary] if summary else None,
            "error": err,
        }
    lh = Likelihood.from_workspace(DEFAULT_WORKSPACE)
    lh.bounds[lh.poi_index] = (-10.0, 60.0)  # injection_study's range for these values on this workspace
    _injection_one_by_one(lh, [1.0], 3, seed=1)
    one_by_one = max(n_toys // 4, 1)  # ~10 toys/s: a quarter of the toys is enough for the rate
    _, t, err = _timed(lambda: _injection_one_by_one(lh, mu_values, one_by_one, seed=2))
    out["kvv_one_by_one"] = {"seconds": t, "toys_per_s": len(mu_values) * one_by_one / t, "error": err}
    out["speedup_over_pyhf_logpdf"] = out["kvv_on_pyhf_logpdf"]["seconds"] / out["kvv"]["seconds"]
    out["speedup_over_one_by_one"] = out["kvv"]["toys_per_s"] / out["kvv_one_by_one"]["toys_per_s"]
    return out


def run(plain: bool = True, plain_limit: bool = False, pyhf_jax: bool = True, pyhf_jax_limit: bool = True) -> dict:
    """Run the benchmark and return the timings as a dict."""
    spec = json.loads(WORKSPACE.read_text())
    result = {"workspace": WORKSPACE.name, "kvv": run_kvv(spec)}
    if pyhf_jax:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result["pyhf_jax"] = run_pyhf_jax(spec, with_limit=pyhf_jax_limit)
        # kvv's MLE always returns the Hessian uncertainties; pyhf's scipy optimiser returns none (minuit does)
        pairs = {"mle_with_uncertainties": ("mle", "mle"), "mle_point_estimate": ("mle_scipy", "mle"),
                 "significance": ("significance", "significance"), "limit90": ("limit90", "limit90")}  # fmt: skip
        jax = result["pyhf_jax"]
        result["kvv_speedup_over_pyhf_jax"] = {
            name: jax[theirs]["seconds"] / result["kvv"][ours]["seconds"]
            for name, (theirs, ours) in pairs.items()
            if jax[theirs].get("seconds") and not jax[theirs].get("error")
        }
    if plain:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result["plain_pyhf"] = run_plain(spec, with_limit=plain_limit)
    return result


def _fmt(entry: dict | None, key: str) -> str:
    if not entry:
        return "-"
    if entry.get("seconds") is None:
        return entry.get("error") or "-"
    value = entry.get(key)
    text = f"{entry['seconds']:8.2f} s"
    if value is not None:
        shown = f"{value:.3f}" if isinstance(value, float) else "/".join(f"{v:+.3f}" for v in value)
        text += f"  ({key}={shown})"
    if entry.get("error"):
        text += f"  FAILED: {entry['error']}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-plain", action="store_true", help="skip plain pyhf")
    parser.add_argument("--plain-limit", action="store_true", help="also time the plain-pyhf limit (slow)")
    parser.add_argument("--no-pyhf-jax-limit", action="store_true", help="skip the pyhf-JAX limit (several minutes)")
    parser.add_argument("--toys", type=int, default=200, help="toys per injected value in the toy timing (0: skip)")
    parser.add_argument("--json", type=Path, help="write the result dict to this file")
    args = parser.parse_args()
    result = run(plain=not args.no_plain, plain_limit=args.plain_limit, pyhf_jax_limit=not args.no_pyhf_jax_limit)
    if args.toys:
        result["toys"] = run_toys(args.toys)
    kvv, jax, plain = result["kvv"], result.get("pyhf_jax", {}), result.get("plain_pyhf", {})
    print(f"{'step':<22}{'kvv':<45}{'pyhf (JAX backend)':<45}{'plain pyhf (numpy+minuit)'}")
    print(f"{'build+warm-up MLE':<22}{kvv['build']['seconds'] + kvv['warmup_mle']['seconds']:8.2f} s")
    for step, key in [("MLE", "mu"), ("MLE + MINOS", "minos"), ("significance", "Z"), ("90% CL limit", "mu_up")]:
        name = {"MLE": "mle", "MLE + MINOS": "mle_minos", "significance": "significance", "90% CL limit": "limit90"}[step]
        print(f"{step:<22}{_fmt(kvv.get(name), key):<45}{_fmt(jax.get(name), key):<45}{_fmt(plain.get(name), key) if plain else '-'}")
    for step, ratio in result.get("kvv_speedup_over_pyhf_jax", {}).items():
        print(f"kvv speed-up over pyhf-JAX, {step}: {ratio:.1f}x")
    if "toys" in result:
        toys = result["toys"]
        print(
            f"injection toys on {toys['workspace']} ({toys['toys']} toys, 2 fits + Hessian each): "
            f"batched: kvv {toys['kvv']['toys_per_s']:.1f} toys/s, on pyhf's logpdf {toys['kvv_on_pyhf_logpdf']['toys_per_s']:.1f} "
            f"toys/s; one by one (the optimiser chain): {toys['kvv_one_by_one']['toys_per_s']:.1f} toys/s; "
            f"batched / one by one {toys['speedup_over_one_by_one']:.1f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
