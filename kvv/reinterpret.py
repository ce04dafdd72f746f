"""``python -m kvv.reinterpret``: refit a published B+ -> K+ νν̄ likelihood for another q² spectrum of the signal.

The input is a publication folder (``outputs/<analysis>/publication/`` of
``--stage publish``, or Belle II's public files in the same form): the pyhf
workspace and the joint number densities of the generated q² and the fit bins.
For a model (``sm``, ``scalar``, ``tensor``: :func:`kvv.physics.formfactors.dgamma_dq2_operator`)
each generated-q² bin k of the SM signal gets the weight

    w_k = ∫_k p_model(q²) dq² / ∫_k p_SM(q²) dq²      (p: the spectra normalised to one),

the signal template of every fit bin becomes Σ_k w_k n_kb, its histosys and
MC-statistical data scale with it bin by bin, and the workspace is refitted:
μ is then B(B+ -> K+ νν̄) in units of the SM branching fraction, for that
spectrum. This is the bin-level version of the ``redist`` method
(arXiv:2402.08417): the response inside a generated-q² bin is taken as the
same for every model (the kaon is isotropic in the B frame for all of them).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import logging
import sys
from pathlib import Path

import numpy as np

from kvv.config import DEFAULT_CONFIG, ConfigError, load_config
from kvv.config.fit import FitSettings
from kvv.fit import FitError, run_inference
from kvv.io.artefacts import atomic_path, write_json, write_text
from kvv.physics.formfactors import SPECTRA, dgamma_dq2_operator
from kvv.physics.kinematics import M_KAON, pdg_mass

log = logging.getLogger("kvv.reinterpret")

M_BPLUS = pdg_mass(521)


def bin_weights(model: str, edges: list[float], points_per_bin: int = 201) -> np.ndarray:
    """w_k per generated-q² bin (``edges``), with 1 for the under- and overflow rows (no signal there)."""
    q2_max = (M_BPLUS - M_KAON) ** 2
    grid = np.linspace(0.0, q2_max, 20001)
    norm = {m: np.trapezoid(dgamma_dq2_operator(m, grid, M_BPLUS, M_KAON), grid) for m in ("sm", model)}
    weights = [1.0]
    for lo, hi in itertools.pairwise(edges):
        q2 = np.linspace(max(lo, 0.0), min(hi, q2_max), points_per_bin)
        sm = np.trapezoid(dgamma_dq2_operator("sm", q2, M_BPLUS, M_KAON), q2) / norm["sm"] if hi > lo else 0.0
        target = np.trapezoid(dgamma_dq2_operator(model, q2, M_BPLUS, M_KAON), q2) / norm[model]
        weights.append(target / sm if sm > 0 else 0.0)
    return np.asarray([*weights, 1.0])


def reweighted_workspace(workspace: dict, densities: dict, model: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The workspace with its signal templates reweighted to ``model``; and the new signal yield per channel bin."""
    weights = bin_weights(model, densities["q2_gen_edges"])
    signal = densities["signal_template"]
    out = copy.deepcopy(workspace)
    yields = {}
    for channel in out["channels"]:
        entry = densities["regions"].get(channel["name"])
        sample = next((s for s in channel["samples"] if s["name"] == signal), None)
        if entry is None or sample is None:
            continue
        density = np.sum([np.asarray(s["density"]) for s in entry["samples"].values()], axis=0)
        old = density.sum(axis=0)[entry["workspace_bins"]]
        new = (weights @ density)[entry["workspace_bins"]]
        if len(new) != len(sample["data"]):
            raise FitError(f"channel {channel['name']}: {len(sample['data'])} workspace bins, but the densities map {len(new)}")
        ratio = np.divide(new, old, out=np.zeros_like(new), where=old > 0)
        sample["data"] = (np.asarray(sample["data"]) * ratio).tolist()
        for modifier in sample["modifiers"]:  # absolute per-bin data follow the template; relative ones stay
            if modifier["type"] == "histosys":
                modifier["data"] = {k: (np.asarray(v) * ratio).tolist() for k, v in modifier["data"].items()}
            elif modifier["type"] in ("staterror", "shapesys"):
                modifier["data"] = (np.asarray(modifier["data"]) * ratio).tolist()
        yields[channel["name"]] = np.asarray(sample["data"])
    return out, yields


def with_poi_bounds(workspace: dict, bounds: tuple[float, float]) -> dict:
    """The workspace with the POI bounds of each measurement set to ``bounds`` (another spectrum may need a wider range)."""
    out = copy.deepcopy(workspace)
    for measurement in out["measurements"]:
        config = measurement["config"]
        parameters = [p for p in config.get("parameters", []) if p["name"] != config["poi"]]
        poi = next((p for p in config.get("parameters", []) if p["name"] == config["poi"]), {"name": config["poi"]})
        config["parameters"] = [*parameters, {**poi, "bounds": [list(bounds)]}]
    return out


def reinterpret(
    publication: Path, models: list[str], outdir: Path, settings: FitSettings, poi_bounds: tuple[float, float] | None = None
) -> dict:
    """Refit the publication's workspace for every model; returns ``{model: {mu, errors, limit, expected}}``."""
    workspace = json.loads((publication / "workspace.json").read_text())
    if poi_bounds is not None:
        workspace = with_poi_bounds(workspace, poi_bounds)
    densities = json.loads((publication / "joint_densities.json").read_text())
    summary: dict[str, dict] = {}
    shapes: dict[str, dict[str, np.ndarray]] = {}
    for model in models:
        spec, shapes[model] = reweighted_workspace(workspace, densities, model)
        write_json(spec, outdir / f"workspace_{model}.json")
        results = run_inference(outdir / f"workspace_{model}.json", outdir / model, settings)
        mle, limit = results["mle"], results.get("upper_limit", {})
        summary[model] = {
            "mu": mle["poi_value"],
            "mu_error": mle["poi_error"],
            "minos": mle["minos"],
            "upper_limit": limit.get("observed"),
            "expected_limit": limit.get("expected"),
            "scan": results.get("scan"),
        }
    write_json(summary, outdir / "reinterpretation.json")
    write_text(_markdown(summary, settings), outdir / "reinterpretation.md")
    _plot_shapes(shapes, outdir / "signal_shapes.png")
    return summary


def _markdown(summary: dict, settings: FitSettings) -> str:
    lines = ["# Reinterpretation: the signal strength for other q² spectra", "",
             f"| spectrum | μ | MINOS | {settings.cl:.0%} CL upper limit on μ | expected |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for model, row in summary.items():
        expected = row["expected_limit"][2] if row["expected_limit"] else float("nan")
        limit = row["upper_limit"] if row["upper_limit"] is not None else float("nan")
        lines.append(f"| {model} | {row['mu']:.3f} | {row['minos'][0]:+.3f}/{row['minos'][1]:+.3f} | {limit:.3f} | {expected:.3f} |")
    return "\n".join(lines) + "\n"


def _plot_shapes(shapes: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """The signal templates of each model over the concatenated workspace bins, normalised to unit sum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for model, per_channel in shapes.items():
        values = np.concatenate(list(per_channel.values()))
        ax.step(np.arange(len(values) + 1), np.append(values, values[-1]) / max(values.sum(), 1e-300), where="post", label=model)
    edges = np.cumsum([0] + [len(v) for v in next(iter(shapes.values())).values()])
    for edge, name in zip(edges[:-1], next(iter(shapes.values())), strict=True):
        ax.axvline(edge, color="grey", lw=0.5)
        ax.text(edge + 0.2, ax.get_ylim()[1] * 0.95, name, va="top", fontsize=9)
    ax.set_xlabel("fit bin (regions concatenated)")
    ax.set_ylabel("signal fraction per bin")
    ax.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kvv.reinterpret", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("publication", type=Path, help="folder with workspace.json and joint_densities.json (kvv's --stage publish)")
    p.add_argument("--models", nargs="+", choices=SPECTRA, default=list(SPECTRA), help="q² spectra to refit for")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="analysis YAML whose fit: settings (CL, test statistic) the fits use")
    p.add_argument("--outputs", type=Path, default=None, help="output folder (default: <publication>/../reinterpretation)")
    p.add_argument(
        "--poi-bounds", type=float, nargs=2, default=None, metavar=("LO", "HI"), help="POI range of the fits (default: the workspace's)"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    for chatty in ("pyhf", "jax"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        settings = load_config(args.config).fit.model_copy(update={"steps": ["mle", "scan", "limit"]})
        outdir = args.outputs or args.publication.parent / "reinterpretation"
        outdir.mkdir(parents=True, exist_ok=True)
        bounds = tuple(args.poi_bounds) if args.poi_bounds else None
        summary = reinterpret(args.publication, args.models, outdir, settings, bounds)
    except (ConfigError, FitError, OSError, json.JSONDecodeError) as exc:
        print(f"kvv.reinterpret: error: {exc}", file=sys.stderr)
        return 2
    print((outdir / "reinterpretation.md").read_text())
    log.info("results in %s", outdir)
    del summary
    return 0


if __name__ == "__main__":
    sys.exit(main())
