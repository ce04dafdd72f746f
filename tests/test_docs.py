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
