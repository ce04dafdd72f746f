"""Fit results as JSON and a short Markdown summary."""

from __future__ import annotations

from pathlib import Path

from kvv.io.artefacts import write_json, write_text


def _statistic_name(results: dict) -> str:
    settings = results.get("settings", {})
    codes = ", ".join(f"{m} {c['interpcode']}" for m, c in settings.get("modifier_settings", {}).items())
    name = {"qtilde": "q~_mu", "q": "q_mu"}.get(settings.get("test_statistic", "qtilde"), "q~_mu")
    return f"{name}; interpolation {codes}" if codes else name


def _markdown(results: dict) -> str:
    lines = ["# kvv fit summary", ""]
    if "workspace" in results:
        lines += [f"Workspace: `{results['workspace']}`", ""]
    fit = results.get("mle")
    if fit:
        lo, hi = fit.get("minos", [None, None]) or [None, None]
        minos = f" (MINOS {lo:+.3f} / {hi:+.3f})" if lo is not None else ""
        lines += [
            "## Best fit",
            f"- {fit['poi']} = {fit['poi_value']:.3f} ± {fit['poi_error']:.3f}{minos}; optimiser `{fit['optimizer']}`",
            f"- branching fraction = {fit['branching_fraction']:.3g} ± {fit['branching_fraction_error']:.2g}",
        ]
    split = results.get("grouped_impacts")
    if split:
        lines.append(f"- stat = {split['stat']:.3f}, syst = {split['syst']:.3f}, total = {split['total']:.3f}")
        mc_stat = split["groups"].get("MC statistics", {}).get("impact")
        if mc_stat is not None:  # the staterror parameters count as systematic in the split above
            ratio = f" ({mc_stat / split['stat']:.1f} × data)" if split["stat"] > 0 else ""
            lines.append(f"- data statistics {split['stat']:.3f}, MC statistics {mc_stat:.3f}{ratio}")
        lines.append("")
        lines += ["| group | impact on POI |", "|---|---|"]
        lines += [f"| {g} | {v['impact']:.3f} |" for g, v in split["groups"].items()]
    table = results.get("systematics_table")
    if table:
        lines += ["", "## Uncertainties by source", systematics_markdown(table, results.get("mle", {}).get("poi", "mu"))]
    sig = results.get("significance")
    if sig:
        lines += ["", "## Significance", f"- observed Z = {sig['Z_obs']:.2f} (p0 = {sig['p0_obs']:.2e}); expected Z = {sig['Z_exp']:.2f}"]
    lim = results.get("upper_limit")
    if lim:
        e = lim["expected"]
        lines += [
            "",
            f"## {lim['cl']:.0%} CL upper limit (asymptotic CLs of {_statistic_name(results)})",
            f"- observed {lim['observed']:.3f}; expected {e[2]:.3f} (−2σ {e[0]:.3f}, −1σ {e[1]:.3f}, +1σ {e[3]:.3f}, +2σ {e[4]:.3f})",
        ]
        if "branching_fraction" in lim:
            lines.append(f"- B < {lim['branching_fraction']:.3g} (observed)")
    toys = results.get("upper_limit_toys")
    if toys:
        lines += [
            "",
            f"## {toys['cl']:.0%} CL upper limit (CLs from toys)",
            f"- observed {toys['observed']:.3f} (asymptotic {toys['asymptotic_observed']:.3f})",
        ]
        lines += ["", "| POI | CLs | CLs+b | CLb | toys |", "|---|---|---|---|---|"]
        lines += [
            f"| {p['mu']:.3g} | {p['cls']:.3f} ± {p['cls_error']:.3f} | {p['clsb']:.3f} | {p['clb']:.3f} | {p['n_toys']} |"
            for p in toys["points"]
        ]
    gof = results.get("goodness_of_fit")
    if gof:
        lines += ["", "## Goodness of fit (saturated model)", f"- t = {gof['t']:.2f}, ndof = {gof['ndof']}, p = {gof['p_value']:.3f}"]
    inj = results.get("injection")
    if inj:
        lines += [
            "",
            "## Signal injection",
            "| μ_inj | toys (failed) | mean μ̂ | median μ̂ | pull mean | pull width | μ_inj in 68 % interval | Hesse pull mean / width |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['mu_injected']:g} | {r['n_toys']} ({r['n_failed']}) | {r['mu_mean']:.3g} | {r['mu_median']:.3g} "
            f"| {r['pull_mean']:.3f} ± {r['pull_mean_error']:.3f} | {r['pull_width']:.3f} ± {r['pull_width_error']:.3f} "
            f"| {r['coverage_68']:.0%} ± {r['coverage_68_error']:.0%} | {r['hesse_pull_mean']:.2f} / {r['hesse_pull_width']:.2f} |"
            for r in inj
        ]
    ranking = results.get("impacts")
    if ranking:
        lines += ["", "## Top impacts (post-fit ±1σ)", "| NP | Δμ up | Δμ down |", "|---|---|---|"]
        lines += [f"| {r['name']} | {r['postfit_up']:+.3f} | {r['postfit_down']:+.3f} |" for r in ranking[:10]]
    return "\n".join(lines) + "\n"


def systematics_markdown(table: dict, poi: str = "mu") -> str:
    """The systematics table: each source's impact on the POI, then the totals."""
    lines = [f"| source | impact on {poi} | parameters |", "|---|---|---|"]
    lines += [f"| {name} | {row['impact']:.3f} | {row['n_parameters']} |" for name, row in table["groups"].items()]
    lines += [
        f"| **total systematic** | **{table['syst']:.3f}** | |",
        f"| **statistical** | **{table['stat']:.3f}** | |",
        f"| **total** | **{table['total']:.3f}** | |",
    ]
    return "\n".join(lines) + "\n"


def write_report(results: dict, outdir: Path) -> dict[str, Path]:
    """Write ``fit_results.json``, ``fit_summary.md`` (and ``systematics_table.md``) into ``outdir``."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"json": outdir / "fit_results.json", "markdown": outdir / "fit_summary.md"}
    write_json(results, paths["json"])
    write_text(_markdown(results), paths["markdown"])
    if "systematics_table" in results:
        paths["systematics"] = outdir / "systematics_table.md"
        poi = results.get("mle", {}).get("poi", "mu")
        header = f"# Uncertainties on {poi} by source\n\nGrouped impacts: sqrt(sigma_total^2 - sigma^2 with the source fixed).\n\n"
        write_text(header + systematics_markdown(results["systematics_table"], poi), paths["systematics"])
    return paths
