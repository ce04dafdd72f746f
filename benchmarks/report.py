"""Machine description, goal checks and the JSON / Markdown output of ``python -m benchmarks``."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path

PACKAGES = ("kvv", "numpy", "numba", "awkward", "uproot", "coffea", "pandas", "hist", "xgboost", "dask", "distributed", "pyhf")


def machine() -> dict:
    """CPU model, cores, memory, load average now and package versions."""
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gb": mem_kb / 1024**2,
        "load_average_start": os.getloadavg(),
        "python": platform.python_version(),
        "packages": versions,
    }


def goals(results: dict) -> list[dict]:
    """Each goal with its measured value and whether it is met (None: not measured in this run)."""
    rate = lambda key: results.get("throughput", {}).get(key, {}).get("events_per_s_per_core")  # noqa: E731
    out = []

    def add(name: str, value: float | None, target: float, higher: bool = True, unit: str = "") -> None:
        met = None if value is None else (value >= target if higher else value <= target)
        out.append({"goal": name, "value": value, "target": target, "unit": unit, "met": met, "higher_is_better": higher})

    io, b = rate("io"), rate("chain")
    add("(b) / (a) per core", b / io if io and b else None, 0.5)
    for key, label, target in (("pandas", "(c)", 5.0), ("awkward", "(d)", 2.0)):
        same = results.get("throughput", {}).get(key, {})
        add(f"(b) / {label}, same events", same.get("speedup_of_chain"), target, unit="x")
    syst = results.get("systematics", {})
    if "all" in syst:
        add("all variations / nominal processing time", syst["all"]["relative_to_nominal"], 2.0, higher=False, unit="x")
    for row in results.get("scaling", {}).get("workers", []):
        if row["workers"] == 2:
            add(f"parallel efficiency, 2 workers, {row['executor']}", row["efficiency"], 0.9)
    mem = results.get("memory", {})
    big = [r for r in mem.get("vs_chunksize", []) if r["chunksize"] >= 200_000]
    if big:
        add("worker peak RSS at 200k-event chunks", max(r["peak_rss_mb"] for r in big) / 1024, 1.5, higher=False, unit="GB")
    if mem.get("vs_dataset"):
        peaks = [r["peak_rss_mb"] for r in mem["vs_dataset"]]
        add("peak RSS growth across dataset sizes", (max(peaks) - min(peaks)) / min(peaks), 0.1, higher=False)
    fit = results.get("fit", {})
    speedup = fit.get("kvv_speedup_over_pyhf_jax", {})
    if speedup:
        add("fit: MLE with uncertainties, kvv / pyhf-JAX", speedup.get("mle_with_uncertainties"), 10.0, unit="x")
        add("fit: 90 % CL limit, kvv / pyhf-JAX", speedup.get("limit90"), 30.0, unit="x")
    cost = results.get("chunk_cost")
    if cost:
        add("processor's fixed cost per chunk, all variations", 1e3 * cost["fixed_s"], 20.0, higher=False, unit="ms")
        if "per_event_10k_over_200k" in cost:
            add("time per event, 10k-event / 200k-event chunks", cost["per_event_10k_over_200k"], 1.1, higher=False)
    if "toys" in fit:
        add("injection-study toys per second (default workspace)", fit["toys"]["kvv"]["toys_per_s"], 100.0, unit="/s")
    return out


def slurm_note(results: dict, n_events: float = 5.7e9, cores: int = 1000, chunksize: int = 200_000) -> dict:
    """What 1 ab^-1 of MC needs on ``cores`` cores, from the measured per-core rate and task overhead."""
    rate = results.get("throughput", {}).get("chain", {}).get("events_per_s_per_core")
    overhead = results.get("scaling", {}).get("dask_task_overhead", {}).get("overhead_per_task_s")
    bytes_per_event = results.get("samples", {}).get("bytes_per_event")
    if not rate:
        return {}
    tasks = n_events / chunksize
    compute_s = n_events / (rate * cores)
    overhead_s = tasks * (overhead or 0.0) / cores
    note = {
        "events": n_events,
        "cores": cores,
        "chunksize": chunksize,
        "tasks": tasks,
        "core_hours": n_events / rate / 3600,
        "wall_hours_compute": compute_s / 3600,
        "wall_hours_task_overhead": overhead_s / 3600,
        "task_seconds": chunksize / rate,
    }
    if bytes_per_event:
        note["input_tb"] = n_events * bytes_per_event / 1e12
        note["aggregate_read_gb_per_s"] = bytes_per_event * rate * cores / 1e9
    return note


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]


def markdown(results: dict) -> str:
    """The human-readable summary of a results dict."""
    m = results["machine"]
    lines = [
        "# kvv benchmarks",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {m['cpu']}, {m['usable_cores']} usable cores, {m['memory_gb']:.1f} GB; "
        f"load average {tuple(round(x, 2) for x in m['load_average_start'])} at start, "
        f"{tuple(round(x, 2) for x in m.get('load_average_end', ()))} at end.  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v) + "  ",
        f"Samples: {results.get('samples', {}).get('events', '-')} events in the default process mix "
        f"({results.get('samples', {}).get('bytes_per_event', 0):.0f} bytes/event on disk), chunks of {results.get('chunksize')} events.",
        "",
        "## Throughput per core (median of repeats, one process)",
        "",
    ]
    rows = []
    for key, label in (("io", "(a) uproot, analysis branches only"), ("chain", "(b) kvv processor, whole chain"),
                       ("chain_staged", "(b) same calls, staged (timers)"), ("awkward", "(d) processor with awkward features"),
                       ("pandas", "(c) pandas way")):  # fmt: skip
        t = results.get("throughput", {}).get(key)
        if t:
            rows.append(
                [label, t["events"], t["events_per_s_per_core"], t.get("events_per_cpu_s"), t.get("speedup_of_chain"), t["repeats"]]
            )
    lines += _table(["what", "events", "events/s/core (wall)", "events/CPU-s", "(b) speed-up on same events", "repeats"], rows)
    stages = results.get("stages")
    if stages:
        total = sum(stages.values())
        lines += ["", "## Stages of (b)", ""]
        lines += _table(
            ["stage", "seconds", "share", "µs/event"],
            [[k, v, v / total, 1e6 * v / results["throughput"]["chain_staged"]["events"]] for k, v in stages.items()],
        )
    agreement = results.get("agreement")
    if agreement:
        lines += ["", "## Agreement of the outputs (cutflow counts exact; sum w, sum w² per bin to 1e-9 relative)", ""]
        lines += _table(["comparison", "events", "quantities checked", "identical", "first mismatch"],
                        [[k, v["events"], v["checked"], v["identical"], (v["mismatches"] or ["-"])[0]] for k, v in agreement.items()])  # fmt: skip
    syst = results.get("systematics")
    if syst and "all" in syst:
        lines += ["", f"## Cost of the systematic variations (processor, {syst['events']} events, same models)", ""]
        labels = {"none": "nominal only", "weight": "+ weight variations", "all": "+ object variations (all)"}
        lines += _table(["templates filled", "object variations", "seconds", "relative to nominal"],
                        [[labels[k], syst[k]["variations"], syst[k]["seconds"], syst[k].get("relative_to_nominal", 1.0)] for k in labels])  # fmt: skip
    scaling = results.get("scaling")
    if scaling:
        lines += ["", f"## Scaling ({scaling['events']} events, chunks of {scaling['chunksize']})", ""]
        lines += _table(["executor", "workers", "seconds", "events/s", "efficiency"],
                        [[r["executor"], r["workers"], r["seconds"], r["events_per_s"], r["efficiency"]] for r in scaling["workers"]])  # fmt: skip
        o = scaling["dask_task_overhead"]
        lines += ["", f"Dask per-task overhead (1 worker, {o['events']} events): {o['tasks_small']} chunks of {o['small_chunksize']} in {o['seconds_small']:.2f} s "
                  f"vs {o['tasks_large']} chunks of {o['large_chunksize']} in {o['seconds_large']:.2f} s -> **{1e3 * o['overhead_per_task_s']:.1f} ms per task**."]  # fmt: skip
    mem = results.get("memory")
    if mem:
        lines += ["", "## Worker memory (fresh process per point, iterative executor)", ""]
        rows = [
            ["chunk size", r["chunksize"], r["chunks"], r["events"], r["baseline_rss_mb"], r["peak_rss_mb"], r["peak_rss_sampled_mb"]]
            for r in mem["vs_chunksize"]
        ]
        rows += [
            ["dataset size", r["chunksize"], r["chunks"], r["events"], r["baseline_rss_mb"], r["peak_rss_mb"], r["peak_rss_sampled_mb"]]
            for r in mem["vs_dataset"]
        ]
        lines += _table(
            ["series", "chunk size", "chunks", "events", "baseline RSS MB", "peak RSS MB (VmHWM)", "peak RSS MB (sampled)"], rows
        )
    cost = results.get("chunk_cost")
    if cost:
        lines += ["", "## The processor's cost per chunk (every systematic variation on, a fresh process, best of 5 below 50k)", ""]
        lines += _table(
            ["chunk", "ms", "µs/event", "of which in the kernel (system CPU), µs/event"],
            [
                [f"{int(n):,} events", 1e3 * t, 1e6 * t / int(n), 1e6 * cost["system_seconds_per_chunk"][n] / int(n)]
                for n, t in cost["seconds_per_chunk"].items()
            ],
        )
        lines += [
            "",
            f"Fitted over the chunks of {', '.join(f'{n:,}' for n in cost['fitted_sizes'])} events, time = fixed + n × per-event: "
            f"**{1e3 * cost['fixed_s']:.1f} ms per chunk** + {1e6 * cost['per_event_s']:.2f} µs/event.",
        ]
    formats = results.get("formats")
    if formats:
        lines += [
            "",
            f"## Input routes ({formats['events']} events of {formats['sample']}, chunks of {formats['chunksize']}, one process)",
            "",
        ]
        lines += _table(
            ["route", "seconds", "events/s/core", "relative to kvv's layout"],
            [[name, r["seconds"], r["events_per_s_per_core"], r["relative_to_kvv"]] for name, r in formats["routes"].items()],
        )
    if "generation" in results:
        lines += [
            "",
            "## Generation (benchmarks/generation.py)",
            "",
            "```",
            json.dumps(results["generation"], indent=1, default=str)[:3000],
            "```",
        ]
    fit = results.get("fit")
    if fit:
        lines += ["", f"## Fit (benchmarks/fit.py; {fit.get('workspace')}; toys on {fit.get('toys', {}).get('workspace', '-')})", ""]
        kvv, jax_ = fit.get("kvv", {}), fit.get("pyhf_jax", {})
        steps = (("MLE with uncertainties", "mle", "mle", "mle_with_uncertainties"), ("MLE point estimate", "mle", "mle_scipy", "mle_point_estimate"),
                 ("significance", "significance", "significance", "significance"), ("90 % CL limit", "limit90", "limit90", "limit90"))  # fmt: skip
        rows = [[label, kvv.get(k, {}).get("seconds"), jax_.get(j, {}).get("seconds"), fit.get("kvv_speedup_over_pyhf_jax", {}).get(r)]
                for label, k, j, r in steps]  # fmt: skip
        lines += _table(["step", "kvv s", "pyhf JAX s", "kvv speed-up"], rows)
        answers = (("μ̂", ("mle", "mu")), ("σ(μ)", ("mle", "sigma")), ("Z", ("significance", "Z")), ("limit", ("limit90", "mu_up")))
        lines += ["", "Answers (kvv / pyhf JAX): " + ", ".join(
            f"{name} {_fmt(kvv.get(step, {}).get(key))} / {_fmt(jax_.get(step, {}).get(key))}" for name, (step, key) in answers) + "."]  # fmt: skip
        toys = fit.get("toys")
        if toys:
            lines += ["", f"Injection-study toys ({toys['toys']}; a free fit, a fit at the injected μ and a Hessian each):", ""]
            lines += _table(["method", "seconds", "toys/s"], [[name, toys[name]["seconds"], toys[name]["toys_per_s"]]
                            for name in ("kvv", "kvv_on_pyhf_logpdf", "kvv_one_by_one") if name in toys])  # fmt: skip
    lines += ["", "## Goals", ""]
    lines += _table(
        ["goal", "measured", "target", "met"],
        [
            [g["goal"], g["value"], f"{'≥' if g.get('higher_is_better', True) else '≤'} {g['target']} {g['unit']}", g["met"]]
            for g in results["goals"]
        ],
    )
    note = results.get("slurm_note")
    if note:
        lines += ["", "## 1 ab⁻¹ of MC on 1000 SLURM cores (extrapolated)", ""]
        lines += [f"- {k}: {_fmt(v)}" for k, v in note.items()]
    for text in results.get("notes", []):
        lines += ["", f"- {text}"]
    return "\n".join(lines) + "\n"


def write(results: dict, directory: Path) -> tuple[Path, Path]:
    """results.json and results.md in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    js, md = directory / "results.json", directory / "results.md"
    js.write_text(json.dumps(results, indent=2, default=str))
    md.write_text(markdown(results))
    return js, md


README = Path(__file__).resolve().parent / "README.md"
RESULTS_BEGIN = "<!-- benchmark-results: written by `python -m benchmarks --update-readme` -->"
RESULTS_END = "<!-- end benchmark-results -->"


def update_readme(results: dict, readme: Path = README) -> Path:
    """Replace the latest-run tables of ``benchmarks/README.md`` by this run's."""
    text = readme.read_text()
    head, rest = text.split(RESULTS_BEGIN)
    _, tail = rest.split(RESULTS_END)
    tables = markdown(results).removeprefix("# kvv benchmarks\n").replace("\n## ", "\n#### ").replace("\n### ", "\n#### ")
    readme.write_text(f"{head}{RESULTS_BEGIN}\n\n{tables.strip()}\n{RESULTS_END}{tail}")
    return readme
