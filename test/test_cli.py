"""`ov3d` verbs: help for every verb of the contract, clear one-line errors."""
from __future__ import annotations

import subprocess
import sys

import pytest

from ov3d_ros.cli import main

CONTRACT = ["demo", "launch", "replay", "synth", "fuse", "train", "eval", "bench"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ov3d_ros.cli", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_every_verb():
    result = run("--help")
    assert result.returncode == 0
    for verb in CONTRACT:
        assert verb in result.stdout


@pytest.mark.parametrize("verb", CONTRACT)
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    assert "usage: ov3d " + verb in capsys.readouterr().out


@pytest.mark.parametrize("words", [["eval", "seg"], ["bench", "fusion"], ["bench", "text"], ["bench", "teacher-noise"],
                                   ["bench", "ggsd-ablation"], ["bench", "student"], ["bench", "vlg"],
                                   ["bench", "superpoints"], ["bench", "grounding"], ["bench", "service"],
                                   ["bench", "soak"], ["eval", "ground"],
                                   ["train", "ggsd"], ["train", "distill"], ["train", "vlg"], ["train", "grounding"],
                                   ["fuse"], ["synth"]])
def test_built_subverbs_have_help(words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code == 0
    assert "usage: ov3d " + " ".join(words) in capsys.readouterr().out


def test_launch_with_bad_config_is_one_readable_line(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("fusion_node:\n  ros__parameters:\n    voxel_size_m: -1.0\n")
    result = run("launch", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "voxel_size_m" in result.stderr and "outside" in result.stderr


def test_replay_of_a_missing_bag_is_one_readable_line(tmp_path):
    result = run("replay", str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "not found" in result.stderr


def test_train_grounding_without_data_is_one_readable_line(tmp_path):
    result = run("train", "grounding", "--out", str(tmp_path / "run"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "no dataset" in result.stderr


def test_bench_grounding_refuses_a_missing_checkpoint(tmp_path):
    result = run("bench", "grounding", "--checkpoint", str(tmp_path / "none.pt"), "--queries", "5")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "no such grounding checkpoint" in result.stderr
