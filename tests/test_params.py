"""The params of inference and teacher jobs: exactly what their outputs depend on."""

from __future__ import annotations

import copy

import yaml

from icldistill.params import inference_settings, teacher_backend, teacher_settings

from .conftest import ROOT, validated

DEFAULT = validated(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
MODEL = "smollm2-135m"


def test_default_params_carry_the_configured_values():
    assert inference_settings(DEFAULT, MODEL, "ner") == {
        "backend": "hf",
        "dtype": "auto",
        "trust_remote_code": False,
        "reuse_prefix": True,
        "batch_size": 16,
        "max_new_tokens": 256,
        "stop": [],
        "scoring": "generate",
    }
    assert teacher_settings(DEFAULT, MODEL) == {
        "backend": "hf",
        "dtype": "auto",
        "trust_remote_code": False,
        "reuse_prefix": True,
        "batch_size": 8,
        "top_k": 256,
        "value_dtype": "bfloat16",
    }


def test_a_teacher_setting_changes_only_the_teacher_params():
    cfg = copy.deepcopy(DEFAULT)
    cfg["teacher"]["top_k"] = 64
    assert teacher_settings(cfg, MODEL)["top_k"] == 64
    assert inference_settings(cfg, MODEL, "nli") == inference_settings(DEFAULT, MODEL, "nli")


def test_vllm_options_merge_per_model_and_the_teacher_follows_generation():
    cfg = copy.deepcopy(DEFAULT)
    cfg["generation"]["backend"] = "vllm"
    cfg["models"][MODEL]["vllm"] = {"max_model_len": 2048}
    settings = inference_settings(cfg, MODEL, "qa")
    assert settings["vllm"]["max_model_len"] == 2048
    assert settings["vllm"]["tensor_parallel_size"] == 1  # the grid-wide option stays
    assert "batch_size" not in settings and "reuse_prefix" not in settings
    assert teacher_backend(cfg) == "vllm"
    cfg["teacher"]["backend"] = "hf"
    assert teacher_settings(cfg, MODEL)["backend"] == "hf" and teacher_settings(cfg, MODEL)["batch_size"] == 8
