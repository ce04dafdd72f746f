"""How loose a truth-level generator filter is: the analysis's events it would drop, on unfiltered samples.

For each sample named, generates it twice with the same seed into a scratch
directory: plainly and with the filter. The same seed generates the same events,
so the filtered file's event numbers are exactly the generated events that pass.
The plain file then goes through the analysis's processor (cleanup, kernels,
preselection, the trained BDTs of ``--models``), and the table counts the
preselected and the BDT1-passing events the filter would have dropped.

    python -m kvv.run --executor dask                     # once: the default run's trained models
    python benchmarks/generator_filter.py --samples taupair charged mixed uubar ccbar --events 300000

The filter must keep >= 99 % of the events passing the preselection and the BDT1 cut.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import dask
import numpy as np
import uproot

from kvv import eventformat as ef
from kvv import explore
from kvv.config import AnalysisConfig, GeneratorFilter, load_config
from kvv.simulate import generate_sample
from kvv.simulate.samples import missing_generation_tasks


def _plain_config(cfg: AnalysisConfig, names: list[str], events: int, directory: Path) -> AnalysisConfig:
    """``cfg`` with only the named samples, unfiltered, ``events`` each, generated into ``directory``."""
    samples = [s.model_copy(update={"events": events, "generator_filter": GeneratorFilter()}) for s in cfg.samples if s.name in names]
    missing = sorted(set(names) - {s.name for s in samples})
    if missing:
        raise SystemExit(f"no sample(s) {', '.join(missing)} in {cfg.name}")
    return cfg.model_copy(update={"samples": samples, "simulation": cfg.simulation.model_copy(update={"directory": str(directory)})})


def measure(cfg: AnalysisConfig, names: list[str], events: int, event_filter: GeneratorFilter, models: Path, directory: Path) -> list[dict]:
    plain = _plain_config(cfg, names, events, directory)
    rows = []
    for task in missing_generation_tasks(plain, plain.samples):
        generate_sample(**task)
    for sample in plain.samples:
        (task,) = missing_generation_tasks(
            plain.model_copy(update={"simulation": plain.simulation.model_copy(update={"directory": str(directory / "filtered")})}),
            [sample],
        )
        meta = generate_sample(**{**task, "generator_filter": event_filter})
        with uproot.open(task["path"]) as f:
            kept = f[ef.TREE_NAME]["__event__"].array(library="np")
        columns = explore.open_sample(plain, sample.name, model_dir=models).columns
        numbers, bdt1 = (np.asarray(a) for a in dask.compute(columns["__event__"], columns["bdt1"]))
        dropped = ~np.isin(numbers, kept)
        passing = bdt1 > plain.bdt.bdt1_cut if plain.bdt is not None else np.zeros(len(numbers), bool)
        rows.append(
            {
                "sample": sample.name,
                "generated": events,
                "filter_efficiency": meta["filter_efficiency"],
                "preselected": len(numbers),
                "preselected_dropped": int(dropped.sum()),
                "bdt1": int(passing.sum()),
                "bdt1_dropped": int((dropped & passing).sum()),
            }
        )
        print(rows[-1], flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| sample | generated | written by the filter | preselected | of them dropped | BDT1-passing | of them dropped |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['sample']} | {r['generated']:,} | {r['filter_efficiency']:.1%} | {r['preselected']:,} | "
            f"{r['preselected_dropped']} | {r['bdt1']:,} | {r['bdt1_dropped']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="ita2021")
    parser.add_argument("--models", type=Path, default=Path("outputs/ita2021/models"))
    parser.add_argument("--samples", nargs="+", default=["taupair"])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--min-charged", type=int, default=3)
    parser.add_argument("--pt-min", type=float, default=0.1)
    args = parser.parse_args(argv)
    if not (args.models / "model.json").exists():
        raise SystemExit(f"{args.models}: no trained models (run python -m kvv.run first)")
    event_filter = GeneratorFilter(min_charged=args.min_charged, pt_min=args.pt_min)
    with tempfile.TemporaryDirectory() as scratch:
        rows = measure(load_config(args.config), args.samples, args.events, event_filter, args.models, Path(scratch))
    print(f"\nfilter: >= {args.min_charged} charged in the CDC acceptance with pT > {args.pt_min} GeV/c\n")
    print(table(rows))


if __name__ == "__main__":
    main()
