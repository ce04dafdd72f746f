"""Two-stage ITA BDT (BDT1, BDT2), continuum reweighting (BDTc) and worker-side scoring.

Training works on feature tables with the feature columns plus ``__event__``,
``weight``, ``sample`` and ``is_signal``; every stage is k-folded on
``__event__ % n_folds`` so no event is scored by a model that saw it.
"""

from kvv.bdt.categories import all_trained, all_up_to_date, category_masks, model_dirs, score, score_tables
from kvv.bdt.eta import SignalEfficiencyTransform
from kvv.bdt.folds import FOLD_RULE, fold_index
from kvv.bdt.kfold import class_balanced_weights, train_folded
from kvv.bdt.model import (
    BDTModels,
    ContinuumReweighter,
    FoldedModel,
    ModelMismatchError,
    config_hash,
    continuum_weight,
    load_models,
    load_models_cached,
    models_up_to_date,
    save_models,
    score_chunk,
    stage_features,
)
from kvv.bdt.reweight import train_continuum_reweighter
from kvv.bdt.train import train_all
from kvv.config.bdt import BDTConfig, BDTStageConfig, ContinuumReweightConfig, XGBParams

__all__ = [
    "FOLD_RULE",
    "BDTConfig",
    "BDTModels",
    "BDTStageConfig",
    "ContinuumReweightConfig",
    "ContinuumReweighter",
    "FoldedModel",
    "ModelMismatchError",
    "SignalEfficiencyTransform",
    "XGBParams",
    "all_trained",
    "all_up_to_date",
    "category_masks",
    "class_balanced_weights",
    "config_hash",
    "continuum_weight",
    "fold_index",
    "load_models",
    "load_models_cached",
    "model_dirs",
    "models_up_to_date",
    "save_models",
    "score",
    "score_chunk",
    "score_tables",
    "stage_features",
    "train_all",
    "train_continuum_reweighter",
    "train_folded",
]
