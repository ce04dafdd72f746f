"""Analysis configuration: the shipped YAMLs validate, bad ones fail with the key's path."""

from pathlib import Path

import pytest
import yaml

from kvv.config import ANALYSIS_CONFIG_DIR, ConfigError, load_config
from kvv.features import FEATURE_NAMES


@pytest.mark.parametrize("path", sorted(ANALYSIS_CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg.templates[0] == cfg.fit.signal_template


def test_default_is_ita2021_with_facts_binning():
    cfg = load_config()
    assert cfg.name == "ita2021"
    assert set(cfg.features) <= set(FEATURE_NAMES)
    sr = next(r for r in cfg.regions if r.name == "SR")
    assert [a.edges for a in sr.axes] == [[0.5, 2.0, 2.4, 3.5], [0.95, 0.97, 0.99, 1.0]]
    n_bins = sum((len(r.axes[0].edges) - 1) * (len(r.axes[1].edges) - 1) for r in cfg.regions)
    assert n_bins == 24  # the 2021 fit: 24 bins in all
    assert cfg.preselection.n_tracks_min == 4 and cfg.preselection.n_tracks_max == 10
    assert cfg.templates == ["signal", "charged", "mixed", "uubar", "ddbar", "ssbar", "ccbar", "taupair"]


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load((ANALYSIS_CONFIG_DIR / "ita2021.yaml").read_text())
    mutate(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_unknown_key_names_its_path(tmp_path):
    path = _write(tmp_path, lambda raw: raw["preselection"].update(n_track_min=3))
    with pytest.raises(ConfigError, match=r"bad\.yaml: preselection\.n_track_min: Extra inputs"):
        load_config(path)


def test_mistyped_value_names_its_path(tmp_path):
    path = _write(tmp_path, lambda raw: raw["preselection"].update(n_tracks_min="four"))
    with pytest.raises(ConfigError, match=r"preselection\.n_tracks_min: Input should be a valid integer"):
        load_config(path)


def test_unknown_process_is_rejected(tmp_path):
    path = _write(tmp_path, lambda raw: raw["samples"][0].update(process="bbbar"))
    with pytest.raises(ConfigError, match=r"samples\.0\.process: .*unknown process 'bbbar'"):
        load_config(path)


def test_decreasing_bin_edges_are_rejected(tmp_path):
    path = _write(tmp_path, lambda raw: raw["regions"][0]["axes"][0].update(edges=[0.5, 0.4]))
    with pytest.raises(ConfigError, match=r"regions\.0\.axes\.0\.edges"):
        load_config(path)


def test_split_control_needs_categories_and_unique_names(tmp_path):
    path = _write(tmp_path, lambda raw: raw["controls"][0].update(split_by="n_tracks"))
    with pytest.raises(ConfigError, match=r"controls\.0: .*split_by and categories go together"):
        load_config(path)
    first = load_config().controls[0].variable
    path = _write(tmp_path, lambda raw: raw["controls"].append(dict(raw["controls"][0])))
    with pytest.raises(ConfigError, match=rf"duplicate controls \['{first}'\]"):
        load_config(path)
    path = _write(tmp_path, lambda raw: raw["controls"].append(dict(raw["controls"][0], split_by="n_tracks", categories={4: "four"})))
    assert load_config(path).controls[-1].key == f"{first}_by_n_tracks"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such analysis configuration"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_config(bad)


def test_hash_changes_with_content(tmp_path):
    a = load_config()
    b = load_config(_write(tmp_path, lambda raw: raw["preselection"].update(n_tracks_min=5)))
    assert a.hash() == load_config().hash()
    assert a.hash() != b.hash()
