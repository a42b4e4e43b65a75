"""The answer report of a replay: kinds of answers, precision among answers, the reliability table and curve."""
from __future__ import annotations

import math

import pytest

from ov3d_ros.evaluation.answers import Answer, answer_kind, answer_report
from ov3d_ros.evaluation.grounding import GroundingCase
from ov3d_ros.evaluation.plots import plot_reliability
from ov3d_ros.grounding.engine import NOT_LABELLED


@pytest.mark.parametrize("answer,kind", [
    (Answer(True, "1 candidate(s) for 'chair'", 0.4), "answered"),
    (Answer(True, NOT_LABELLED + "'lamp' (mapped labels: chair); 1 candidate(s)", 0.01),
     "answered, no object labelled as the target"),
    (Answer(False, "map is empty: no objects have been mapped yet"), "refused: empty map"),
    (Answer(False, "nothing in the map looks like 'lamp'; mapped labels: chair"),
     "refused: nothing resembles the target"),
    (Answer(False, "cannot answer in frame 'base_link': no transform"), "refused: unreachable frame"),
    (Answer(False, "query is empty"), "refused: bad query"),
])
def test_each_answer_has_its_kind(answer, kind):
    assert answer_kind(answer) == kind


def test_report_counts_precision_and_reliability(tmp_path):
    answers = [Answer(True, "ok", 0.95), Answer(True, "ok", 0.91), Answer(True, "ok", 0.15),
               Answer(False, "map is empty: no objects")]
    cases = [GroundingCase("unique", 0.6), GroundingCase("unique", 0.1), GroundingCase("multiple", 0.3),
             GroundingCase("unique", 0.0)]
    report = answer_report(answers, cases, bins=10)
    assert report["kinds"] == {"answered": 3, "refused: empty map": 1}
    assert report["answered_share"] == 0.75 and report["precision_answered"] == pytest.approx(2 / 3)
    top, low = report["reliability"][9], report["reliability"][1]
    assert top["count"] == 2 and top["right"] == 0.5 and top["mean_score"] == pytest.approx(0.93)
    assert low["count"] == 1 and low["right"] == 1.0
    assert math.isnan(report["reliability"][5]["right"])
    assert plot_reliability(report, tmp_path / "r.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="2 answers for 1 cases"):
        answer_report(answers[:2], cases[:1])
