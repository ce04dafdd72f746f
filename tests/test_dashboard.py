"""The Dask dashboard, the performance report and report.html, looked at in a real (headless) Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from browser import BrowserUnavailable, chromium, look_at

from kvv.config import load_config
from kvv.io.samplefiles import sample_file_paths
from kvv.run import main
from kvv.simulate import read_metadata

#: every string of every data source of the page's Bokeh documents (task names, labels)
BOKEH_STRINGS = """(() => {
  if (typeof Bokeh === "undefined") return null;
  const seen = new Set();
  for (const doc of Bokeh.documents) for (const model of doc.all_models) {
    const data = model.data;
    if (!data || typeof data !== "object") continue;
    for (const column of (data instanceof Map ? data.values() : Object.values(data)))
      if (Array.isArray(column)) for (const x of column) if (typeof x === "string") seen.add(x);
  }
  return Array.from(seen);
})()"""

PAGE_FACTS = """({title: document.title, text: document.body.innerText,
  images: Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length})"""


@pytest.fixture(scope="module")
def browser():
    try:
        with chromium() as endpoint:
            yield endpoint
    except BrowserUnavailable as exc:
        pytest.skip(str(exc))


def _counts(dashboard: str) -> dict:
    with urllib.request.urlopen(dashboard.removesuffix("/status") + "/json/counts.json", timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_dashboard_report_and_performance_report_in_a_browser(trained, tmp_path, browser):
    config, outputs = trained
    out = tmp_path / "outputs"
    shutil.copytree(outputs, out)
    name = load_config(config).name
    command = [sys.executable, "-m", "kvv.run", "--config", str(config), "--stage", "process", "--executor", "dask",
               "--workers", "2", "--chunksize", "500", "--outputs", str(out), "--no-progress"]  # fmt: skip
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    drain = threading.Thread(target=lambda: lines.extend(iter(run.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    drain.start()
    deadline = time.monotonic() + 120
    dashboard = None
    while dashboard is None and time.monotonic() < deadline and run.poll() is None:
        found = [m.group(1) for line in lines for m in [re.match(r"Dask dashboard: (\S+)", line)] if m]
        dashboard = found[0] if found else None
        time.sleep(0.2)
    assert dashboard is not None, "".join(lines)[-2000:]
    while time.monotonic() < deadline and run.poll() is None and _counts(dashboard).get("processing", 0) == 0:
        time.sleep(0.2)  # until the workers run the processor
    screenshot = tmp_path / "dashboard.png"
    strings = look_at(browser, dashboard, wait_s=5, screenshot=screenshot, evaluate=BOKEH_STRINGS)
    print(f"dashboard screenshot: {screenshot}")
    assert run.wait(timeout=600) == 0, "".join(lines)[-3000:]
    drain.join(timeout=10)
    assert strings is not None, "the page has no Bokeh: the dashboard is not being served"
    assert any(s.startswith("KnunuProcessor") for s in strings), sorted(strings)[:50]  # kvv's tasks in the task stream
    assert screenshot.stat().st_size > 20_000
    if os.environ.get("KVV_SCREENSHOT_DIR"):  # the README's picture
        shutil.copy(screenshot, Path(os.environ["KVV_SCREENSHOT_DIR"]) / "dashboard.png")
    console = "".join(lines)
    assert "distributed." not in console, console[-3000:]  # distributed logs at WARNING only

    # the fit stage completes report.html; both pages render offline
    assert main(["--config", str(config), "--stage", "fit", "--outputs", str(out), "--no-progress"]) == 0
    results = json.loads((out / name / "fit" / "fit_results.json").read_text())
    page = look_at(browser, (out / name / "report.html").as_uri(), wait_s=2, evaluate=PAGE_FACTS)
    assert page["title"] == f"kvv: {name}"
    assert f"mu = {results['mle']['poi_value']:.3f}" in page["text"]
    impacts = results["grouped_impacts"]
    # the fit summary puts the data- and MC-statistical impacts side by side
    assert f"data statistics {impacts['stat']:.3f}, MC statistics {impacts['groups']['MC statistics']['impact']:.3f}" in page["text"]
    assert page["images"] >= 3
    performance = look_at(browser, (out / name / "dask_performance_report.html").as_uri(), wait_s=4, evaluate=BOKEH_STRINGS)
    assert performance is not None and any(s.startswith("KnunuProcessor") for s in performance)
    summary = json.loads((out / name / "summary.json").read_text())
    assert summary["performance_report"] == str(out / name / "dask_performance_report.html")
    metrics = json.loads((out / name / "run_metrics.json").read_text())
    cfg = load_config(config)
    # every entry of every file is read: the events generated, less those a generator filter did not write
    written = sum(read_metadata(path)["n_written"] for s in cfg.samples for path in sample_file_paths(cfg, s))
    assert metrics["process"]["events"] == written
    assert metrics["process"]["events_per_s_per_core"] > 0 and metrics["fit"]["wall_s"] > 0


@pytest.mark.slow
def test_lazy_exploration_fills_the_runners_control_histogram(trained, reference):
    """q2_rec after the preselection, built lazily and computed on a local Dask cluster: the Runner's histogram, bit for bit."""
    import dask
    import hist
    import numpy as np
    from distributed import Client, LocalCluster

    from kvv import explore

    config, outputs = trained
    cfg = load_config(config)
    control = next(c for c in cfg.controls if c.variable == "q2_rec")
    axis = hist.axis.Regular(control.bins, control.start, control.stop, name="q2_rec")
    import dask_awkward as dak
    import hist.dask

    sample = explore.open_sample(config, "signal", chunksize=1500, model_dir=outputs / cfg.name / "models")
    assert isinstance(sample.columns, dak.Array) and sample.columns.npartitions == len(sample.partitions) > 1
    exact = sample.histogram(axis)
    lazy = hist.dask.Hist(axis, storage=hist.storage.Weight()).fill(q2_rec=sample.columns.q2_rec, weight=sample.columns.weight)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster):
        got, floating = dask.compute(exact, lazy)
    want = reference["controls"][control.key][{"dataset": "signal"}]
    np.testing.assert_array_equal(got[{"dataset": "signal"}].values(flow=True), want.values(flow=True))
    np.testing.assert_array_equal(got[{"dataset": "signal"}].variances(flow=True), want.variances(flow=True))
    # hist.dask adds floating-point sums partition by partition: the same within rounding
    np.testing.assert_allclose(floating.values(flow=True), want.values(flow=True), rtol=1e-12, atol=0)
    np.testing.assert_allclose(floating.variances(flow=True), want.variances(flow=True), rtol=1e-12, atol=0)
    assert want.values().sum() > 0


@pytest.mark.slow
def test_readme_exploration_example_runs(trained):
    """The README's exploration example, on the small test analysis and its models."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Exploring a variable interactively", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    config, outputs = trained
    head, rest = code.split("\n", 1)
    assert head.startswith("CONFIG, MODELS = ")
    namespace: dict = {}
    exec(f"CONFIG, MODELS = {str(config)!r}, {str(outputs / load_config(config).name / 'models')!r}\n" + rest, namespace)
    assert namespace["q2"].values().sum() > namespace["q2_high_bdt"].values().sum() > 0
