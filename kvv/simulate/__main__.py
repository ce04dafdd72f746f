"""Command line: ``python -m kvv.simulate --process charged --events 100000 --seed 1 --out f.root``."""

from __future__ import annotations

import argparse
import json

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from kvv.eventformat import Process
from kvv.io.inputs import FB_PER_NB
from kvv.physics.beams import SQRT_S_OFF_RESONANCE, SQRT_S_ON_RESONANCE, Beams
from kvv.simulate.samples import cross_section, generate_sample


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, generate one sample file, print its metadata."""
    parser = argparse.ArgumentParser(prog="python -m kvv.simulate", description=__doc__)
    parser.add_argument("--process", required=True, choices=[p.name.lower() for p in Process if p != Process.DATA])
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--events", type=int, help="number of events")
    size.add_argument("--lumi", type=float, help="equivalent luminosity in fb^-1: events = cross-section x lumi")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True, help="output ROOT file")
    parser.add_argument("--off-resonance", action="store_true", help=f"sqrt(s) = {SQRT_S_OFF_RESONANCE} GeV")
    parser.add_argument("--data", action="store_true", help="pseudo-data: no MC-truth branches")
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--tune", type=json.loads, default=None, help="JSON, e.g. '{\"pt_scale\": 0.33}'")
    args = parser.parse_args(argv)
    beams = Beams(sqrt_s=SQRT_S_OFF_RESONANCE if args.off_resonance else SQRT_S_ON_RESONANCE)
    process = Process[args.process.upper()]
    if args.lumi is not None:
        args.events = round(cross_section(process, beams.sqrt_s) * FB_PER_NB * args.lumi)
        if args.events == 0:
            parser.error(f"{args.process} has no cross-section at sqrt(s) = {beams.sqrt_s} GeV")
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn()]
    with Progress(*columns) as bar:
        task = bar.add_task(f"{args.process} -> {args.out}", total=args.events)
        metadata = generate_sample(
            process,
            args.events,
            args.out,
            beams=beams,
            seed=args.seed,
            chunk_size=args.chunk_size,
            data=args.data,
            tune=args.tune,
            progress=lambda done: bar.update(task, completed=done),
        )
    print(json.dumps(metadata, indent=2))
    return metadata


if __name__ == "__main__":
    main()
