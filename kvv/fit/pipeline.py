"""``run_inference``: every fit step on one workspace, with plots and a report."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from kvv.config.fit import FitSettings

from . import plots
from .infer import (
    goodness_of_fit,
    mle,
    pulls,
    scan,
    significance,
    to_branching_fraction,
    toy_upper_limit,
    upper_limit,
)
from .injection import injection_study
from .likelihood import Likelihood
from .ranking import grouped_impacts, impacts, systematics_table
from .report import write_report

log = logging.getLogger(__name__)


def run_inference(
    workspace: dict | str | Path,
    outdir: Path,
    settings: FitSettings | None = None,
    *,
    groups: dict[str, list[str]] | None = None,
    sources: dict[str, list[str]] | None = None,
    measurement: str | None = None,
) -> dict:
    """Run the inference steps of ``settings`` on a pyhf workspace, write plots and ``fit_results.json``/``fit_summary.md``.

    ``groups`` are nuisance groups for grouped impacts (``{name: [glob patterns]}``;
    default: ``settings.groups`` or one group per modifier type); ``sources`` the
    rows of the systematics table (default: one per modifier). Raises
    :class:`FitError` (one line, naming the file and the field) for unreadable
    or invalid workspaces.
    """
    options = settings or FitSettings()
    groups = groups or dict(options.groups) or None
    outdir = Path(outdir)
    steps = set(options.steps)
    results: dict = {"workspace": str(workspace) if isinstance(workspace, (str, Path)) else "<dict>", "timings": {}}

    def timed(name: str, fn):
        log.info("fit: %s ...", name)
        start = time.perf_counter()
        value = fn()
        results["timings"][name] = time.perf_counter() - start
        log.info("fit: %s done in %.1f s", name, results["timings"][name])
        return value

    lh = timed("build", lambda: Likelihood.from_workspace(workspace, measurement, options.modifier_settings))
    results["settings"] = {"test_statistic": options.test_statistic, "modifier_settings": lh.modifier_settings}
    poi = lh.poi_index
    fit = timed("mle", lambda: mle(lh, minos=True))
    lo, hi = fit.minos[lh.poi_name]
    results["mle"] = {
        "poi": lh.poi_name,
        "poi_value": float(fit.bestfit[poi]),
        "poi_error": float(fit.uncertainty[poi]),
        "minos": [lo, hi],
        "branching_fraction": float(to_branching_fraction(fit.bestfit[poi], options.sm_branching_fraction)),
        "branching_fraction_error": float(to_branching_fraction(fit.uncertainty[poi], options.sm_branching_fraction)),
        "twice_nll": fit.twice_nll,
        "optimizer": fit.optimizer,
        "attempts": fit.attempts,
        "minima": fit.minima,
        "parameters": {n: [float(v), float(e)] for n, v, e in zip(fit.names, fit.bestfit, fit.uncertainty, strict=True)},
    }
    results["pulls"] = pulls(lh, fit)
    results["correlation"] = {"names": fit.names, "matrix": fit.correlation}
    results["grouped_impacts"] = timed("grouped_impacts", lambda: grouped_impacts(lh, fit, groups))
    results["systematics_table"] = timed("systematics_table", lambda: systematics_table(lh, fit, sources))
    if "scan" in steps:
        results["scan"] = timed("scan", lambda: scan(lh, fit=fit))
    if "significance" in steps:
        results["significance"] = dataclasses.asdict(timed("significance", lambda: significance(lh)))
    if "limit" in steps:
        limit = dataclasses.asdict(
            timed(
                "limit",
                lambda: upper_limit(lh, options.cl, scan_points=21 if "plots" in steps else 0, test_statistic=options.test_statistic),
            )
        )
        if limit["scan"] is None:
            del limit["scan"]
        limit["branching_fraction"] = float(to_branching_fraction(limit["observed"], options.sm_branching_fraction))
        results["upper_limit"] = limit
        if options.limit_method == "toys":
            toys = timed(
                "limit_toys",
                lambda: toy_upper_limit(lh, options.cl, n_toys=options.limit_toys, seed=options.seed, asymptotic=limit["observed"]),
            )
            toys["branching_fraction"] = float(to_branching_fraction(toys["observed"], options.sm_branching_fraction))
            results["upper_limit_toys"] = toys
    if "gof" in steps:
        results["goodness_of_fit"] = timed("gof", lambda: goodness_of_fit(lh, fit))
    if "impacts" in steps:
        results["impacts"] = timed("impacts", lambda: impacts(lh, fit, refit_top=options.refit_top))
    if "injection" in steps:
        results["injection"] = timed(
            "injection", lambda: injection_study(lh, options.injection_values, options.injection_toys, seed=options.seed)
        )
    if "plots" in steps:
        plotdir = outdir / "plots"

        def make_plots() -> list[Path]:
            paths = plots.plot_templates(lh, lh.init, plotdir, "prefit")
            paths += plots.plot_templates(lh, fit.bestfit, plotdir, "postfit")
            paths += plots.plot_pulls(results["pulls"], plotdir)
            if "impacts" in results:
                paths += plots.plot_ranking(results["impacts"], plotdir, poi=lh.poi_name)
            if "scan" in results:
                paths += plots.plot_scan(results["scan"], plotdir)
            if "upper_limit" in results and "scan" in results["upper_limit"]:
                paths += plots.plot_cls(results["upper_limit"], plotdir)
            if "injection" in results:
                paths += plots.plot_injection(results["injection"], plotdir)
            return paths

        results["plots"] = [str(p) for p in timed("plots", make_plots)]
    results["report"] = {k: str(v) for k, v in write_report(results, outdir).items()}
    log.info("fit: %s = %.3f %+.3f/%+.3f; results in %s", lh.poi_name, fit.bestfit[poi], lo, hi, outdir)
    return results
