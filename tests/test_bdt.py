"""Tests of kvv.bdt: folding, storage, scoring invariances, eta transform, continuum reweighting."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kvv.bdt import (
    BDTConfig,
    BDTStageConfig,
    ContinuumReweightConfig,
    FoldedModel,
    ModelMismatchError,
    SignalEfficiencyTransform,
    config_hash,
    continuum_weight,
    fold_index,
    load_models,
    load_models_cached,
    models_up_to_date,
    score_chunk,
    stage_features,
    train_all,
    train_continuum_reweighter,
    train_folded,
)
from kvv.bdt.diagnostics import weighted_auc
from kvv.config.bdt import XGBParams

FEATURES = [f"x{i}" for i in range(6)]
SMALL = {"n_estimators": 30, "max_depth": 3, "n_jobs": 1}


def _sample(rng, n, name, shift, first_event, weight):
    x = rng.normal(size=(n, len(FEATURES))) + shift
    table = pd.DataFrame(x, columns=FEATURES)
    table["__event__"] = np.arange(first_event, first_event + n, dtype=np.int64)
    table["weight"] = weight
    table["sample"] = name
    table["is_signal"] = name == "signal"
    return table


def _tables(seed=0):
    rng = np.random.default_rng(seed)
    mc = pd.concat(
        [
            _sample(rng, 3000, "signal", 1.0, 0, 0.001),
            _sample(rng, 3000, "uubar", 0.0, 10_000, 2.0),
            _sample(rng, 3000, "charged", 0.4, 20_000, 1.0),
        ],
        ignore_index=True,
    )
    offres = _sample(rng, 1500, "offres", 0.1, 50_000, 1.0)
    return mc, offres


def _config(**kw):
    settings = {
        "bdt1": BDTStageConfig(features=FEATURES, **SMALL),
        "bdt2": BDTStageConfig(features=FEATURES, **SMALL),
        "bdt1_cut": 0.5,
        "sr_bdt2_cut": 0.7,
        "continuum": ContinuumReweightConfig(features=FEATURES, bdt1_cut=0.5, samples=["uubar"], **SMALL),
    }
    return BDTConfig(**(settings | kw))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    mc, offres = _tables()
    cfg = _config()
    outdir = tmp_path_factory.mktemp("bdt")
    summary = train_all(mc, cfg, outdir, config_hash=config_hash(cfg), offres_table=offres)
    return mc, cfg, outdir, summary


def _columns(table):
    return {f: table[f].to_numpy() for f in FEATURES}


def test_fold_index_even_odd():
    ev = np.array([0, 1, 2, 3, -1, -2, 2**40 + 1])
    assert fold_index(ev, 2).tolist() == [0, 1, 0, 1, 1, 0, 1]
    assert fold_index(ev, 3).max() < 3
    with pytest.raises(ValueError):
        fold_index(ev, 1)


def test_out_of_fold_scores_never_from_a_model_that_saw_the_event():
    # Random labels on noise: deep trees memorise their training events, so a
    # score from a model that saw the event would separate the labels.
    rng = np.random.default_rng(3)
    n = 1200
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = rng.integers(0, 2, n)
    event = rng.permutation(n).astype(np.int64)
    params = XGBParams(n_estimators=40, max_depth=7, learning_rate=0.5, subsample=1.0, min_child_weight=0.0, n_jobs=1)
    fit = train_folded("leak", x, y, np.ones(n), event, params, [f"v{i}" for i in range(8)], 2)
    train_auc = weighted_auc(np.concatenate(fit.train_scores), np.concatenate([y[r] for r in fit.train_rows]))
    assert train_auc > 0.95  # memorised
    assert abs(weighted_auc(fit.oof, y) - 0.5) < 0.06  # but never used on its own events
    # FoldedModel.predict routes each row to the model of its fold, i.e. reproduces the OOF scores.
    assert np.array_equal(fit.model.predict(x, event), fit.oof)
    folds = fold_index(event, 2)
    for k, booster in enumerate(fit.model.boosters):
        assert not fit.train_rows[k][folds == k].any()
        assert np.array_equal(booster.inplace_predict(x[folds == k]), fit.oof[folds == k])


def test_train_all_summary_and_outputs(trained):
    _, _, outdir, summary = trained
    assert summary["skipped"] is False
    assert 0.7 < summary["auc_bdt1"] <= 1.0 and 0.5 < summary["auc_bdt2"] <= 1.0
    assert 0.0 < summary["signal_eff_sr"] <= summary["signal_eff_bdt1"] <= 1.0
    assert set(summary["ks_pvalue_bdt1"]) == {"signal", "background"}
    assert summary["continuum"]["ratio"] > 0
    sidecar = json.loads((outdir / "model.json").read_text())
    assert sidecar["fold_rule"] == "__event__ % n_folds" and sidecar["n_folds"] == 2
    assert sidecar["stage_names"] == ["bdt1", "bdt2", "bdtc"]
    assert sidecar["stages"]["bdt1"]["features"] == FEATURES
    for name in ("roc.png", "overtraining_bdt1.png", "importance_bdt2.png", "continuum_weights.png", "summary.json"):
        assert (outdir / "diagnostics" / name).is_file()


def test_up_to_date_skips_training(trained, tmp_path):
    mc, cfg, outdir, _ = trained
    h = config_hash(cfg)
    assert models_up_to_date(outdir, h)
    assert not models_up_to_date(outdir, config_hash(_config(n_folds=3)))
    mtime = (outdir / "model.json").stat().st_mtime_ns
    assert train_all(mc, cfg, outdir, config_hash=h)["skipped"] is True
    assert (outdir / "model.json").stat().st_mtime_ns == mtime
    assert not models_up_to_date(tmp_path, h)
    # A missing model file makes the set stale.
    for f in outdir.glob("*.ubj"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "model.json").write_text((outdir / "model.json").read_text())
    assert models_up_to_date(tmp_path, h)
    (tmp_path / "bdt2_fold1.ubj").unlink()
    assert not models_up_to_date(tmp_path, h)


def test_config_hash_canonical():
    cfg = _config()
    assert config_hash(cfg) == config_hash(cfg.model_dump(mode="json"))
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash(cfg) != config_hash(_config(bdt1_cut=0.6))
    with pytest.raises(ValueError):
        BDTStageConfig(features=FEATURES, not_a_parameter=1)


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (FEATURES[:-1], "extra ['x5']"),
        ([*FEATURES, "x6"], "missing ['x6']"),
        ([FEATURES[1], FEATURES[0], *FEATURES[2:]], "out of order from position 0"),
    ],
)
def test_feature_mismatch_is_a_clear_error(trained, features, message):
    outdir = trained[2]
    with pytest.raises(ModelMismatchError) as err:
        load_models(outdir, features)
    text = str(err.value)
    assert message in text and "bdt1_fold0.ubj" in text and "\n" not in text


def test_hash_mismatch(trained):
    outdir = trained[2]
    with pytest.raises(ModelMismatchError, match="config_hash"):
        load_models(outdir, FEATURES, expected_hash="0" * 64)


def test_scores_independent_of_chunking_and_order(trained):
    mc, cfg, outdir, _ = trained
    models = load_models_cached(outdir, stage_features(cfg), config_hash(cfg))
    assert load_models_cached(outdir, stage_features(cfg), config_hash(cfg)) is models
    event = mc["__event__"].to_numpy()
    full = score_chunk(models, _columns(mc), event)
    assert set(full) == {"bdt1", "bdt2", "eta_bdt2", "continuum_weight"}
    passed = full["bdt1"] > cfg.bdt1_cut
    assert np.isnan(full["bdt2"][~passed]).all() and not np.isnan(full["bdt2"][passed]).any()

    edges = [0, 1, 17, 1000, 4321, 8999, len(mc)]
    chunks = [score_chunk(models, _columns(mc.iloc[a:b]), event[a:b]) for a, b in itertools.pairwise(edges)]
    perm = np.random.default_rng(1).permutation(len(mc))
    shuffled = score_chunk(models, _columns(mc.iloc[perm]), event[perm])
    for key, value in full.items():
        np.testing.assert_array_equal(np.concatenate([c[key] for c in chunks]), value)
        np.testing.assert_array_equal(shuffled[key], value[perm])


def test_save_load_round_trip(trained, tmp_path):
    mc, cfg, outdir, _ = trained
    loaded = load_models(outdir, stage_features(cfg))
    x = mc[FEATURES].to_numpy(np.float32)
    event = mc["__event__"].to_numpy()
    in_memory = FoldedModel("bdt1", FEATURES, [b.copy() for b in loaded.bdt1.boosters])
    for b in in_memory.boosters:
        b.save_model(tmp_path / "again.json")  # JSON also round-trips
    again = FoldedModel("bdt1", FEATURES, [type(b)(model_file=str(tmp_path / "again.json")) for b in in_memory.boosters])
    np.testing.assert_array_equal(in_memory.predict(x, event), loaded.bdt1.predict(x, event))
    np.testing.assert_array_equal(again.boosters[0].inplace_predict(x), in_memory.boosters[-1].inplace_predict(x))
    # Scores stored during training (out-of-fold) are what the loaded models give.
    fresh = load_models(outdir, stage_features(cfg))
    np.testing.assert_array_equal(fresh.bdt1.predict(x, event), loaded.bdt1.predict(x, event))


def test_eta_transform_monotonic_and_uniform_on_signal():
    rng = np.random.default_rng(5)
    fit_scores = rng.beta(5, 2, 20000)
    eta = SignalEfficiencyTransform.fit(fit_scores, np.full(20000, 0.3), n_knots=501)
    grid = np.linspace(-0.1, 1.1, 2001)
    values = eta(grid)
    assert np.all(np.diff(values) <= 0)
    assert values[0] == 1.0 and values[-1] == 0.0
    assert stats.kstest(eta(rng.beta(5, 2, 20000)), "uniform").pvalue > 0.01
    restored = SignalEfficiencyTransform.from_dict(json.loads(json.dumps(eta.to_dict())))
    np.testing.assert_array_equal(restored(grid), values)


def test_eta_transform_uses_weights():
    # Half the events at score 0.2 carrying 3/4 of the weight: eta just above 0.2 is 1/4.
    scores = np.r_[np.full(1000, 0.2), np.linspace(0.5, 0.9, 1000)]
    weights = np.r_[np.full(1000, 3.0), np.ones(1000)]
    eta = SignalEfficiencyTransform.fit(scores, weights)
    assert eta(np.array([0.3]))[0] == pytest.approx(0.25, abs=0.01)
    assert eta(np.array([0.7]))[0] == pytest.approx(0.125, abs=0.01)


def test_continuum_weight_formula_and_clip():
    p = np.array([0.0, 0.2, 0.5, 0.75, 0.9, 0.95, 1.0])
    np.testing.assert_allclose(continuum_weight(p, clip=10.0), [0.0, 0.25, 1.0, 3.0, 9.0, 10.0, 10.0])
    np.testing.assert_allclose(continuum_weight(np.array([0.75]), clip=2.0), [2.0])


def test_bdtc_recovers_known_density_ratio():
    # data ~ N(0.5, 1), MC ~ N(0, 1) with twice the statistics at weight 0.5 before
    # the luminosity scale: the true weight is exp(0.5 x - 0.125) times the yield ratio.
    rng = np.random.default_rng(7)
    n = 20000
    data = pd.DataFrame({"x": rng.normal(0.5, 1.0, n), "__event__": np.arange(n), "bdt1": 1.0})
    mc = pd.DataFrame({"x": rng.normal(0.0, 1.0, 2 * n), "__event__": np.arange(2 * n), "bdt1": 1.0, "weight": 0.5 * 1.2})
    mc.loc[0, "bdt1"] = 0.0  # below the cut: not used
    cfg = ContinuumReweightConfig(features=["x"], n_estimators=60, max_depth=2, mc_lumi_scale=1 / 1.2, bdt1_cut=0.9, n_jobs=1)
    reweighter, info = train_continuum_reweighter(data, mc, cfg, n_folds=2)
    assert info["n_mc"] == 2 * n - 1
    assert info["ratio"] == pytest.approx(1.0, rel=1e-3)
    assert info["closure"] == pytest.approx(1.0, abs=0.05)
    x = mc["x"].to_numpy()[1:]
    central = np.abs(x) < 1.5
    truth = np.exp(0.5 * x - 0.125)
    rel = info["mc_weights"][central] / truth[central] - 1.0
    assert abs(np.median(rel)) < 0.05 and np.median(np.abs(rel)) < 0.15
    # The stored model reproduces the out-of-fold weights of the MC.
    np.testing.assert_allclose(reweighter.weights(x[:, None], mc["__event__"].to_numpy()[1:]), info["mc_weights"], rtol=1e-6)
    with pytest.raises(KeyError, match="bdt1"):
        train_continuum_reweighter(data.drop(columns="bdt1"), mc, cfg)


def test_missing_columns_in_chunk(trained):
    mc, _, outdir, _ = trained
    models = load_models(outdir, FEATURES)
    cols = _columns(mc)
    del cols["x3"]
    with pytest.raises(KeyError, match="x3"):
        score_chunk(models, cols, mc["__event__"].to_numpy())


def test_dict_tables_accepted(tmp_path):
    mc, _ = _tables(seed=2)
    cfg = BDTConfig(
        bdt1=BDTStageConfig(features=FEATURES, **SMALL),
        bdt2=BDTStageConfig(features=FEATURES[:3], **SMALL),
        bdt1_cut=0.5,
    )
    table = {c: mc[c].to_numpy() for c in mc.columns}
    summary = train_all(table, cfg, tmp_path, config_hash="h", diagnostics=False)
    models = load_models(tmp_path, stage_features(cfg), "h")
    out = score_chunk(models, _columns(mc), mc["__event__"].to_numpy())
    assert "continuum_weight" not in out and summary["auc_bdt1"] > 0.7
    assert Path(tmp_path / "model.json").is_file()


def test_empty_chunk(trained):
    _, cfg, outdir, _ = trained
    models = load_models_cached(outdir, stage_features(cfg), config_hash(cfg))
    out = score_chunk(models, {f: np.empty(0) for f in FEATURES}, np.empty(0, dtype=np.int64))
    assert all(len(v) == 0 for v in out.values())


def test_device_option_reaches_xgboost():
    assert BDTStageConfig(features=FEATURES, device="cuda").booster_params()["device"] == "cuda"
    assert BDTStageConfig(features=FEATURES).booster_params()["device"] == "cpu"
    with pytest.raises(ValueError):
        BDTStageConfig(features=FEATURES, device="tpu")
