"""The reinterpretation material of a run, as Belle II published it (arXiv:2507.12393, HEPData 10.17182/hepdata.166082).

``outputs/<analysis>/publication/`` gets:

* ``joint_densities.json``: per region and signal sample, the joint number density of
  the generated q² (truth ``mcq2``, ``publication.q2_gen_edges`` of the YAML, with
  under- and overflow rows) and every flattened fit bin, with its Σw², the indices
  of the bins the workspace keeps, and the generated-q² distribution of all produced
  signal events: what a theorist needs to reweight the signal to another q² spectrum
  and refit, without kvv;
* ``workspace.json``: the pyhf workspace of the fit;
* ``hepdata/`` and ``submission.tar.gz``: a HEPData record made with hepdata-lib and
  checked by its validator: the densities, the efficiency in generated q² per region,
  the pre- and post-fit yields per bin, the upper limit with its expected band and
  the significance, with the workspace as an additional resource.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import shutil
from pathlib import Path

import numpy as np
from hepdata_lib import Submission, Table, Uncertainty, Variable

from kvv import histograms
from kvv.config import AnalysisConfig
from kvv.fit import FitError, Likelihood
from kvv.io.artefacts import write_json

log = logging.getLogger(__name__)

BAND_LABELS = ("expected -2 sigma", "expected -1 sigma", "expected median", "expected +1 sigma", "expected +2 sigma")


def joint_densities(cfg: AnalysisConfig, hists: dict, pruned: dict[str, list[int]]) -> dict:
    """The joint number densities of the signal samples per region, flattened fit bins as columns (JSON-ready)."""
    signal = [s for s in cfg.samples if not s.is_data and s.template == cfg.fit.signal_template]
    regions = {}
    for region in cfg.regions:
        h = hists["densities"][region.name]
        n_bins = int(np.prod([len(a.edges) - 1 for a in region.axes]))
        samples = {}
        for sample in (s for s in signal if s.resonance == region.resonance):
            view = histograms.project(h, {"dataset": sample.name})
            variances = view.variances(flow=True)
            if variances is None:
                raise TypeError("the densities' storage keeps no variances")
            samples[sample.name] = {
                "density": view.values(flow=True).reshape(-1, n_bins).tolist(),
                "sumw2": variances.reshape(-1, n_bins).tolist(),
            }
        if samples:
            dropped = set(pruned.get(region.name, []))
            regions[region.name] = {
                "axes": [{"variable": a.variable, "edges": list(a.edges)} for a in region.axes],
                "fit_bins": n_bins,
                "workspace_bins": [b for b in range(n_bins) if b not in dropped] if len(dropped) < n_bins else [],
                "samples": samples,
            }
    generated = hists["generated"]["q2_gen"]
    return {
        "q2_gen_edges": list(cfg.publication.q2_gen_edges),
        "rows": "generated-q2 bins with an underflow row first and an overflow row last",
        "columns": "the flattened fit bins of the region (row-major over its axes)",
        "signal_template": cfg.fit.signal_template,
        "regions": regions,
        "generated": {s.name: histograms.project(generated, {"dataset": s.name}).values(flow=True).tolist() for s in signal},
    }


def _q2_bins(edges: list[float]) -> list[tuple[float, float]]:
    return list(itertools.pairwise(edges))


def _summed(entry: dict, key: str) -> np.ndarray:
    """A region entry's ``key`` ("density" or "sumw2"), summed over its signal samples."""
    return np.sum([np.asarray(s[key]) for s in entry["samples"].values()], axis=0)


def _density_table(region: str, entry: dict, edges: list[float]) -> Table:
    """Weighted signal events per (generated-q² bin, fit bin), summed over the region's signal samples."""
    density = _summed(entry, "density")[1:-1]  # drop the q2 flow rows: no signal there
    sumw2 = _summed(entry, "sumw2")[1:-1]
    table = Table(f"Joint number density {region}")
    table.description = (
        f"Signal MC in region {region}: weighted events per generated-q2 bin and flattened fit bin "
        f"(axes {', '.join(a['variable'] for a in entry['axes'])}); summed over generated q2 it is the signal template."
    )
    table.keywords["observables"] = ["N"]
    q2 = Variable("$q^2_{gen}$", is_independent=True, is_binned=True, units="GeV$^2$")
    q2.values = [b for b in _q2_bins(edges) for _ in range(density.shape[1])]
    fit_bin = Variable("fit bin", is_independent=True, is_binned=False)
    fit_bin.values = [k for _ in range(density.shape[0]) for k in range(density.shape[1])]
    events = Variable("weighted signal events", is_independent=False, is_binned=False)
    events.values = density.ravel().tolist()
    stat = Uncertainty("MC statistics")
    stat.values = np.sqrt(sumw2).ravel().tolist()
    events.add_uncertainty(stat)
    for variable in (q2, fit_bin, events):
        table.add_variable(variable)
    return table


def _efficiency_table(densities: dict, edges: list[float]) -> Table:
    """Per region: selected over produced signal events, in bins of generated q²."""
    generated = np.sum([np.asarray(g) for g in densities["generated"].values()], axis=0)[1:-1]
    table = Table("Signal efficiency vs generated q2")
    table.description = "Fraction of the produced signal events (all signal samples) that fall in each fit region, per generated-q2 bin."
    table.keywords["observables"] = ["EFF"]
    q2 = Variable("$q^2_{gen}$", is_independent=True, is_binned=True, units="GeV$^2$")
    q2.values = _q2_bins(edges)
    table.add_variable(q2)
    for region, entry in densities["regions"].items():
        selected = _summed(entry, "density")[1:-1].sum(axis=1)
        sumw2 = _summed(entry, "sumw2")[1:-1].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            eff = np.where(generated > 0, selected / generated, 0.0)
            err = np.where(generated > 0, np.sqrt(sumw2) / generated, 0.0)
        variable = Variable(f"efficiency {region}", is_independent=False, is_binned=False)
        variable.values = eff.tolist()
        unc = Uncertainty("MC statistics")
        unc.values = err.tolist()
        variable.add_uncertainty(unc)
        table.add_variable(variable)
    return table


def _yields_tables(workspace: Path, results: dict, signal: str) -> list[Table]:
    """Pre- and post-fit signal and background, and the observations, per workspace bin of every channel."""
    lh = Likelihood.from_workspace(workspace)
    config = lh.model.config
    fitted = results["mle"]["parameters"]
    post = np.asarray([fitted[name][0] for name in lh.names]) if set(lh.names) <= fitted.keys() else lh.init
    by_sample = {"pre-fit": lh.expected_by_sample(lh.init), "post-fit": lh.expected_by_sample(post)}
    is_signal = np.asarray([s == signal for s in config.samples])
    tables = []
    start = 0
    for channel in config.channels:
        n = config.channel_nbins[channel]
        table = Table(f"Yields {channel}")
        table.description = (
            f"Expected signal and background (pre-fit: nominal; post-fit: the best fit) and observed events per bin of {channel}."
        )
        table.keywords["observables"] = ["N"]
        index = Variable("workspace bin", is_independent=True, is_binned=False)
        index.values = list(range(n))
        table.add_variable(index)
        for stage, values in by_sample.items():
            for label, rows in (("signal", is_signal), ("background", ~is_signal)):
                variable = Variable(f"{stage} {label}", is_independent=False, is_binned=False)
                variable.values = values[rows, start : start + n].sum(axis=0).tolist()
                table.add_variable(variable)
        observed = Variable("observed", is_independent=False, is_binned=False)
        observed.values = np.asarray(lh.data[start : start + n]).tolist()
        table.add_variable(observed)
        tables.append(table)
        start += n
    return tables


def _result_table(results: dict) -> Table:
    table = Table("Upper limit and significance")
    limit, sig = results.get("upper_limit", {}), results.get("significance", {})
    table.description = (
        f"Asymptotic CLs upper limit on the signal strength at {limit.get('cl', 0.9):.0%} CL and the discovery significance."
    )
    table.keywords["observables"] = ["MU"]
    quantity = Variable("quantity", is_independent=True, is_binned=False)
    value = Variable("value", is_independent=False, is_binned=False)
    rows = [("observed upper limit on mu", limit.get("observed"))]
    rows += [(f"{label} upper limit on mu", v) for label, v in zip(BAND_LABELS, limit.get("expected", []), strict=False)]
    rows += [("observed significance Z", sig.get("Z_obs")), ("expected significance Z", sig.get("Z_exp"))]
    rows = [(q, v) for q, v in rows if v is not None and np.isfinite(v)]
    quantity.values = [q for q, _ in rows]
    value.values = [float(v) for _, v in rows]
    table.add_variable(quantity)
    table.add_variable(value)
    return table


def write_publication(cfg: AnalysisConfig, out: Path) -> Path:
    """Write ``out/publication/`` from the process and fit stages' outputs in ``out``; returns the folder."""
    needed = [out / "histograms.pkl", out / "workspace.json", out / "workspace_pruning.json", out / "fit" / "fit_results.json"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise FitError(f"publish: run the process and fit stages first; missing {', '.join(missing)}")
    hists = histograms.load_pickle(out / "histograms.pkl")
    if "densities" not in hists:
        raise FitError(f"{out / 'histograms.pkl'}: no joint number densities (made by an older kvv); run the process stage again")
    pruned = json.loads((out / "workspace_pruning.json").read_text())["pruned_bins"]
    results = json.loads((out / "fit" / "fit_results.json").read_text())
    pub = (out / "publication").resolve()  # absolute: hepdata-lib runs in it
    pub.mkdir(parents=True, exist_ok=True)
    densities = joint_densities(cfg, hists, pruned)
    write_json(densities, pub / "joint_densities.json")
    shutil.copyfile(out / "workspace.json", pub / "workspace.json")

    submission = Submission()
    edges = densities["q2_gen_edges"]
    for region, entry in densities["regions"].items():
        submission.add_table(_density_table(region, entry, edges))
    submission.add_table(_efficiency_table(densities, edges))
    for table in _yields_tables(out / "workspace.json", results, cfg.fit.signal_template):
        submission.add_table(table)
    submission.add_table(_result_table(results))
    submission.add_additional_resource(
        "The pyhf workspace of the fit", str(pub / "workspace.json"), copy_file=True, file_type="HistFactory"
    )
    submission.add_additional_resource("Joint number densities (JSON)", str(pub / "joint_densities.json"), copy_file=True)
    notes = io.StringIO()
    # hepdata-lib writes its archive into the working directory, and prints a note per empty bin
    with contextlib.chdir(pub), contextlib.redirect_stdout(notes):
        try:
            submission.create_files("hepdata", validate=True, remove_old=True)
        except AssertionError as exc:  # hepdata-lib reports a failed validation as an assertion
            raise FitError(
                f"{pub / 'submission.tar.gz'}: the HEPData record does not validate ({exc}): {notes.getvalue()[-500:]}"
            ) from None
    log.info("HEPData record in %s (validated by hepdata-lib)", pub / "submission.tar.gz")
    return pub
