"""The perception YAML parses into typed dataclasses, with clear errors that name the file and key."""
from __future__ import annotations

import pytest

from ov3d_ros.config import (ConfigError, FusionNodeConfig, GroundingNodeConfig, PerceptionConfig,
                             default_config_path, load_perception_config, parameter_specs)


def test_shipped_config_loads_and_matches_defaults():
    config = load_perception_config(default_config_path("perception.yaml"))
    assert config == PerceptionConfig()


def test_every_parameter_has_a_description():
    for cls in (FusionNodeConfig, GroundingNodeConfig):
        for name, _, description, _ in parameter_specs(cls):
            assert description, name


@pytest.mark.parametrize("text,fragment", [
    ("fusion_node:\n  ros__parameters:\n    voxel_size: 0.1\n", "unknown key(s) voxel_size"),
    ("fusion_node:\n  ros__parameters:\n    voxel_size_m: fast\n", "expected float, got str"),
    ("fusion_node:\n  ros__parameters:\n    sync_queue_size: 0\n", "outside [1, 1000]"),
    ("fusion_node:\n  ros__parameters:\n    depth_min_m: 9.0\n    depth_max_m: 2.0\n", "depth_min_m"),
    ("grounding_node:\n  ros__parameters:\n    max_results_limit: 2\n", "default_max_results"),
    ("planner_node:\n  ros__parameters: {}\n", "unknown node section(s) planner_node"),
    ("fusion_node: [1, 2]\n", "must hold only"),
    ("fusion_node:\n  ros__parameters: {a: [\n", "not valid YAML"),
    ("- just a list\n", "top level must be a mapping"),
])
def test_bad_config_errors(tmp_path, text, fragment):
    path = tmp_path / "perception.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_perception_config(path)
    assert fragment in str(error.value)
    assert str(path) in str(error.value)


def test_ints_are_accepted_for_floats(tmp_path):
    path = tmp_path / "perception.yaml"
    path.write_text("fusion_node:\n  ros__parameters:\n    depth_max_m: 5\n")
    assert load_perception_config(path).fusion_node.depth_max_m == 5.0


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read config"):
        load_perception_config("/nonexistent/perception.yaml")


def test_shipped_pipeline_config_loads_with_nested_sections(tmp_path):
    from ov3d_ros.config import PipelineConfig, load_pipeline_config
    assert load_pipeline_config(default_config_path("pipeline.yaml")) == PipelineConfig()
    path = tmp_path / "pipeline.yaml"
    path.write_text("language:\n  templates: ['a {} in a scene', 'a photo of a {}']\nteacher:\n  kind: laser\n")
    with pytest.raises(ConfigError, match="teacher kind must be"):
        load_pipeline_config(path)
    path.write_text("language:\n  templates: ['no placeholder']\n")
    with pytest.raises(ConfigError, match="exactly once"):
        load_pipeline_config(path)
    path.write_text("language:\n  templates: [1, 2]\n")
    with pytest.raises(ConfigError, match="list of strings"):
        load_pipeline_config(path)
    path.write_text("language:\n  templates: ['a {}', 'the {}']\n")
    assert load_pipeline_config(path).language.templates == ["a {}", "the {}"]


def test_a_node_names_a_known_executor():
    assert GroundingNodeConfig().executor == FusionNodeConfig().executor == "events"
    with pytest.raises(ConfigError, match="executor must be one of multi_threaded, single_threaded, events"):
        GroundingNodeConfig(executor="async")
