"""Run outputs that are read by people: cutflow tables, control plots, the run summary."""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import logging
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import hist
import markdown
import numpy as np

from kvv.config import AnalysisConfig, ControlHistogram
from kvv.histograms import NOMINAL, project, variances_of
from kvv.io.artefacts import atomic_path, write_text
from kvv.peaks import fit_resonance

log = logging.getLogger(__name__)

PACKAGES = ("kvv", "numpy", "numba", "awkward", "uproot", "coffea", "dask", "distributed", "hist", "xgboost", "pyhf")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def cutflow_json(cutflow: Mapping[str, Mapping[str, int]], weights: Mapping[str, float | None]) -> dict:
    """``{sample: {step: {"events", "weighted"}}}``: the counts and the counts times each sample's per-event weight."""
    return {
        sample: {step: {"events": int(n), "weighted": int(n) * float(weights.get(sample) or 1.0)} for step, n in rows.items()}
        for sample, rows in cutflow.items()
    }


def cutflow_markdown(table: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """One table per sample of :func:`cutflow_json`: step, raw events, weighted events, efficiency w.r.t. the first row."""
    lines = []
    for sample, rows in table.items():
        lines += [f"### {sample}", "", "| step | events | weighted | efficiency |", "|---|---:|---:|---:|"]
        first = None
        for step, row in rows.items():
            first = first if first is not None else row["events"]
            eff = row["events"] / first if first else 0.0
            lines.append(f"| {step} | {int(row['events'])} | {row['weighted']:.6g} | {eff:.4f} |")
        lines.append("")
    return "\n".join(lines)


def region_yields(templates: Mapping, cfg: AnalysisConfig, produced: Mapping[str, float]) -> dict:
    """Per fit region: nominal signal and background yields, purity S / (S + B), the
    efficiency of each signal sample, its yield over ``produced[sample]`` (its weighted
    events before any selection), and each template's effective number of MC events
    N_eff = (sum w)^2 / sum w^2: how many unweighted events carry its statistical weight."""
    out = {}
    for region in cfg.regions:
        h = templates[region.name]
        signal, background = 0.0, 0.0
        efficiency: dict[str, float] = {}
        sums: dict[str, list[float]] = {}
        for s in cfg.samples:
            if s.is_data or s.resonance != region.resonance:
                continue
            nominal = h[{"dataset": s.name, "variation": NOMINAL}]
            yield_ = float(np.sum(nominal.values()))
            entry = sums.setdefault(s.template, [0.0, 0.0])
            entry[0] += yield_
            entry[1] += float(np.sum(variances_of(nominal)))
            if s.template == cfg.fit.signal_template:
                signal += yield_
                efficiency[s.name] = yield_ / produced[s.name] if produced.get(s.name) else float("nan")
            else:
                background += yield_
        total = signal + background
        purity = signal / total if total > 0 else float("nan")
        n_eff = {template: (w * w / w2 if w2 > 0 else 0.0) for template, (w, w2) in sums.items()}
        out[region.name] = {"signal": signal, "background": background, "efficiency": efficiency, "purity": purity, "n_eff": n_eff}
    return out


def region_yields_markdown(yields: Mapping[str, Mapping]) -> str:
    """The region table of :func:`region_yields`: yields, purity and signal efficiencies."""
    signals = sorted({name for row in yields.values() for name in row["efficiency"]})
    lines = [
        "| region | signal | background | purity | " + " | ".join(f"ε({name})" for name in signals) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(signals),
    ]
    for region, row in yields.items():
        effs = " | ".join(f"{row['efficiency'][n]:.2e}" if n in row["efficiency"] else "–" for n in signals)
        purity = f"{row['purity']:.2%}" if np.isfinite(row["purity"]) else "– (no MC events)"
        lines.append(f"| {region} | {row['signal']:.4g} | {row['background']:.4g} | {purity} | {effs} |")
    templates = sorted({name for row in yields.values() for name in row.get("n_eff", {})})
    lines += [
        "",
        "Effective MC events per template, N_eff = (Σw)² / Σw² (an unweighted template of N_eff events has its precision):",
        "",
        "| region | " + " | ".join(templates) + " |",
        "|---|" + "---:|" * len(templates),
    ]
    for region, row in yields.items():
        cells = (f"{row['n_eff'][t]:.1f}" if t in row.get("n_eff", {}) else "–" for t in templates)
        lines.append(f"| {region} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def environment() -> dict:
    return {"python": platform.python_version(), "machine": platform.machine(), "packages": package_versions()}


def control_plots(controls: Mapping, cfg: AnalysisConfig, outdir: Path) -> list[Path]:
    """Stacked MC templates with data points (where present) per control (and split category) and resonance."""
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for control in cfg.controls:
        for value, label, view in _split_views(control, controls[control.key]):
            stem = control.key if value is None else f"{control.key}{value}"
            for resonance in ("on", "off"):
                title = f"{cfg.name}: {resonance}-resonance" + (f", {label}" if label else "")
                path = _stacked_plot(view, control.variable, cfg, resonance, title, outdir / f"{stem}_{resonance}.png")
                if path is not None:
                    written.append(path)
    return written


def _split_views(control: ControlHistogram, h: hist.Hist) -> list[tuple[int | None, str, hist.Hist]]:
    """(category value, label, histogram without the split axis) per category; one (None, "", h) unsplit."""
    if control.split_by is None:
        return [(None, "", h)]
    return [(value, label, project(h, {control.split_by: hist.loc(value)})) for value, label in control.categories.items()]


def _stacked_plot(h, variable: str, cfg: AnalysisConfig, resonance: str, title: str, path: Path) -> Path | None:
    """One control plot of a (dataset x variable) histogram; None when the resonance has no MC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    samples = [s for s in cfg.samples if s.resonance == resonance]
    mc = [s for s in samples if not s.is_data]
    data = [s for s in samples if s.is_data]
    if not mc:
        return None
    mplhep.style.use("LHCb2")
    by_template: dict[str, hist.Hist] = {}
    for s in mc:
        view = h[{"dataset": s.name}]
        by_template[s.template] = by_template[s.template] + view if s.template in by_template else view
    fig, ax = plt.subplots(figsize=(8, 6))
    mplhep.histplot(list(by_template.values()), label=list(by_template), stack=True, histtype="fill", ax=ax)
    if data:
        total = sum((h[{"dataset": s.name}] for s in data[1:]), h[{"dataset": data[0].name}])
        mplhep.histplot(total, histtype="errorbar", color="black", label="data", ax=ax)
    ax.set_xlabel(h.axes[variable].label)
    ax.set_ylabel("events")
    if any(t.values().sum() > 0 for t in by_template.values()):
        ax.set_yscale("log")
    ax.set_title(title, fontsize=14)
    ax.legend(fontsize=11, ncols=2)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def signal_shapes(controls: Mapping, cfg: AnalysisConfig) -> list[dict]:
    """Median and quartiles of the on-resonance signal-template MC in every control (and split category).

    Quantiles interpolate linearly inside bins and leave out the flow bins, so
    they describe the distribution inside the control's range.
    """
    signal = [s.name for s in cfg.samples if s.template == cfg.fit.signal_template and s.resonance == "on"]
    rows = []
    for control in cfg.controls:
        h = controls[control.key]
        h = sum((h[{"dataset": name}] for name in signal[1:]), h[{"dataset": signal[0]}])
        for value, label, view in _split_views(control, h):
            edges, counts = view.axes[0].edges, np.clip(view.values(), 0.0, None)
            q1, median, q3 = _histogram_quantiles(edges, counts, (0.25, 0.5, 0.75))
            row: dict[str, object] = {
                "control": control.key, "split_by": control.split_by, "category": value, "label": label,
                "signal_in_range": float(counts.sum()), "median": median, "q1": q1, "q3": q3,
            }  # fmt: skip
            if control.fit_peak:
                row["peak_fit"] = _resonance_fit(edges, view.values(), variances_of(view), f"{control.key} {label}".strip())
            rows.append(row)
    return rows


def _resonance_fit(edges: np.ndarray, values: np.ndarray, variances: np.ndarray, what: str) -> dict | None:
    """Breit-Wigner fit of a signal distribution as a dict; None (logged) when it cannot be fitted."""
    if values.sum() <= 0:
        return None
    # the fit needs counts: weighted MC enters as its effective number of events
    scale = values.sum() / variances.sum()
    try:
        return dataclasses.asdict(fit_resonance(edges, values * scale, variances * scale**2))
    except ValueError as exc:
        log.warning("signal peak fit of %s: %s", what, exc)
        return None


def _histogram_quantiles(edges: np.ndarray, counts: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Quantiles of a histogram, linear inside bins; NaN for an empty histogram."""
    total = counts.sum()
    if total <= 0:
        return [float("nan")] * len(qs)
    cdf = np.concatenate([[0.0], np.cumsum(counts)]) / total
    return [float(np.interp(q, cdf, edges)) for q in qs]


def signal_shapes_markdown(rows: list[dict]) -> str:
    """Markdown table of :func:`signal_shapes` rows."""
    lines = [
        "| control | category | signal in range | median | IQR (q3 - q1) | fitted mass | fitted width |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        fit = r.get("peak_fit")
        fitted = f"{fit['mean']:.4f} ± {fit['mean_error']:.4f} | {fit['width']:.4f} ± {fit['width_error']:.4f}" if fit else "– | –"
        lines.append(
            f"| {r['control']} | {r['label'] or '–'} | {r['signal_in_range']:.4g} | {r['median']:.4g} | {r['q3'] - r['q1']:.4g} | {fitted} |"
        )
    return "\n".join(lines) + "\n"


def validation_plots(controls: Mapping, mc: str, data: str, outdir: Path, fits: Mapping | None = None) -> list[Path]:
    """Data against area-normalised MC for each validation-channel histogram (J/psi K+ Mbc, Delta E, proxy BDT2).

    ``fits`` maps a histogram name to a fit of the data with ``expected_counts(edges)``
    (a :class:`kvv.peaks.PeakFit`), drawn as a curve with its mean and resolution.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    outdir.mkdir(parents=True, exist_ok=True)
    mplhep.style.use("LHCb2")
    written = []
    for variable, h in controls.items():
        h_data, h_mc = h[{"dataset": data}], h[{"dataset": mc}]
        scale = h_data.values().sum() / h_mc.values().sum() if h_mc.values().sum() > 0 else 1.0
        fig, ax = plt.subplots(figsize=(8, 6))
        mplhep.histplot(h_mc * scale, histtype="fill", alpha=0.5, label=f"{mc} (scaled to data)", ax=ax)
        mplhep.histplot(h_data, histtype="errorbar", color="black", label=data, ax=ax)
        fit = (fits or {}).get(variable)
        if fit is not None:
            edges = h.axes[variable].edges
            fine = np.linspace(edges[0], edges[-1], 10 * (len(edges) - 1) + 1)
            curve = fit.expected_counts(fine) * 10  # per original bin width
            label = f"fit: mean {fit.mean:.4f} GeV, $\\sigma$ = {1e3 * fit.sigma:.2f} MeV"
            ax.plot(0.5 * (fine[1:] + fine[:-1]), curve, color="tab:red", label=label)
        ax.set_xlabel(h.axes[variable].label)
        ax.set_ylabel("events")
        ax.legend(fontsize=11)
        path = outdir / f"jpsik_{variable}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


#: the Markdown summaries of a run, in the order report.html shows them
REPORT_SECTIONS = (
    ("Fit", "fit/fit_summary.md"),
    ("Systematic uncertainties", "fit/systematics_table.md"),
    ("Signal and background per region", "regions.md"),
    ("Cutflow", "cutflow.md"),
    ("B+ → J/ψ K+ validation", "jpsik_validation.md"),
    ("Signal shapes", "signal_shapes.md"),
)
#: folders whose PNG plots report.html shows
REPORT_PLOTS = ("fit/plots", "plots", "models/diagnostics")


def write_html_report(out: Path, analysis: str) -> Path:
    """``out/report.html``: one self-contained page of the run (summaries, run metrics, every plot inlined).

    Images are embedded as data URIs, so the page can be mailed or attached as it is.
    """
    parts = [f"<h1>kvv run report: {html.escape(analysis)}</h1>"]
    metrics = out / "run_metrics.json"
    if metrics.exists():
        rows = "".join(
            f"<tr><td>{html.escape(stage)}</td><td>{m.get('wall_s', 0):.1f}</td><td>{m.get('events', '')}</td>"
            f"<td>{m.get('events_per_s_per_core', 0):.0f}</td><td>{m.get('chunks', '')}</td></tr>"
            for stage, m in json.loads(metrics.read_text()).items()
        )
        parts.append(
            "<h2>Run</h2><table><tr><th>stage</th><th>wall time [s]</th><th>events</th><th>events/s/core</th><th>chunks</th></tr>"
            f"{rows}</table>"
        )
    if (out / "dask_performance_report.html").exists():
        parts.append('<p><a href="dask_performance_report.html">Dask performance report of the process stage</a></p>')
    for title, name in REPORT_SECTIONS:
        path = out / name
        if path.exists():
            body = markdown.markdown(path.read_text(), extensions=["tables"])
            parts.append(f'<section><h2>{html.escape(title)}</h2><p class="source">{html.escape(name)}</p>{body}</section>')
    for folder in REPORT_PLOTS:
        images = sorted((out / folder).glob("*.png")) if (out / folder).is_dir() else []
        if images:
            parts.append(f"<h2>Plots: {html.escape(folder)}</h2>")
            for image in images:
                data = base64.b64encode(image.read_bytes()).decode()
                parts.append(
                    f'<figure><img alt="{html.escape(image.stem)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(image.name)}</figcaption></figure>"
                )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}.source{color:#888;font-size:small}"
    )
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>kvv: {html.escape(analysis)}</title>"
    page += f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    return write_text(page, out / "report.html")
