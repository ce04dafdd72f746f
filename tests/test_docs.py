"""The README documents what the code does: its tables are rendered from the code."""

from pathlib import Path

from kvv import eventformat, features
from kvv.run import build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_event_format_matches_the_code():
    assert eventformat.markdown_table() in README


def test_readme_feature_table_matches_the_code():
    assert features.markdown_table() in README


def test_readme_quick_start_has_two_commands_that_exist():
    quick = README.split("## Quick start")[1].split("\n## ")[0]
    commands = [line for line in quick.splitlines() if line.startswith("pip install")]
    assert commands == [
        "pip install -e . && python -m kvv.run --executor dask",
        'pip install -e ".[test]" && python -m pytest',
    ]
    build_parser().parse_args(["--executor", "dask"])  # the options it uses exist
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]" && python -m pytest' in ci


def test_configuration_reference_matches_the_schemas():
    from kvv.config import reference

    text = (Path(__file__).resolve().parent.parent / "analysis_config" / "README.md").read_text()
    assert reference.markdown() in text


def test_every_module_of_the_layer_diagram_exists():
    import importlib
    import re

    diagram = README.split("## Architecture")[1].split("```")[1]
    modules = re.findall(r"\b(kvv(?:\.\w+)*|processors)(?=/|\s)", diagram)
    assert len(set(modules)) >= 12, modules
    for name in modules:
        importlib.import_module(name)


def test_configuration_layer_imports_no_compute_library():
    import subprocess
    import sys

    code = "import sys, kvv.config; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("numba", "xgboost", "uproot", "pandas", "awkward", "coffea", "pyhf", "jax"):
        assert f"'{heavy}'" not in loaded, heavy
