"""Config dataclasses against HF config.json files."""

from __future__ import annotations

import json

from sam.modeling.config import PreprocessConfig, SamConfig, VisionConfig


def test_roundtrip_through_json(tmp_path):
    config = SamConfig(vision_config=VisionConfig(hidden_size=168, mlp_dim=696))
    config.to_json_file(tmp_path / "config.json")
    assert SamConfig.from_json_file(tmp_path / "config.json") == config


def test_hf_config_with_generic_keys(tiny_checkpoint):
    data = json.loads((tiny_checkpoint / "config.json").read_text())
    config = SamConfig.from_dict(data)
    assert config.vision_config.hidden_size == data["vision_config"]["hidden_size"]
    assert config.vision_config.intermediate_size == data["vision_config"]["mlp_dim"]
    assert config.vision_config.global_attn_indexes == tuple(
        data["vision_config"]["global_attn_indexes"]
    )


def test_mlp_dim_defaults_to_ratio_only_when_absent():
    assert VisionConfig(hidden_size=1024).intermediate_size == 4096
    assert VisionConfig(hidden_size=384, mlp_dim=1536).intermediate_size == 1536
    assert SamConfig.from_dict({"vision_config": {"mlp_dim": None}}).vision_config.mlp_dim is None


def test_preprocessor_config_forms():
    flat = {"image_mean": [0.1, 0.2, 0.3], "size": {"longest_edge": 512}}
    assert PreprocessConfig.from_dict(flat).longest_edge == 512
    nested = PreprocessConfig.from_dict({"image_processor": flat})
    assert nested.image_mean == (0.1, 0.2, 0.3)
