"""What a planner gets from /ground_object: which queries were answered and why the others were refused, how
often an answer is right, and whether its score says so (a reliability table and curve)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ov3d_ros.evaluation.grounding import GroundingCase
from ov3d_ros.grounding.engine import EMPTY_MAP, INTERNAL_ERROR, NOT_LABELLED, NOTHING_RESEMBLES, UNREACHABLE_FRAME

RIGHT_IOU = 0.25
# message prefix -> the kind of answer (see GroundingEngine.ground and GroundingNode.on_ground_object)
_KINDS = ((NOT_LABELLED, "answered, no object labelled as the target"), (EMPTY_MAP, "refused: empty map"),
          (NOTHING_RESEMBLES, "refused: nothing resembles the target"),
          (UNREACHABLE_FRAME, "refused: unreachable frame"), (INTERNAL_ERROR, "refused: internal error"))


@dataclass(frozen=True)
class Answer:
    """One /ground_object response as the evaluation sees it: success, message, the top candidate's score."""

    success: bool
    message: str
    score: float | None = None


def answer_kind(answer: Answer) -> str:
    """'answered', 'answered, no object labelled as the target' or 'refused: <reason>' (a bad query: 'refused:
    bad query')."""
    for prefix, kind in _KINDS:
        if answer.message.startswith(prefix):
            return kind
    return "answered" if answer.success else "refused: bad query"


def answer_report(answers: Sequence[Answer], cases: Sequence[GroundingCase], bins: int = 10) -> dict:
    """Counts by kind, the answered share, precision among answers (IoU >= RIGHT_IOU) and the reliability table:
    per score bin of the top candidate, the answers in it, their mean score and the share that is right."""
    if len(answers) != len(cases):
        raise ValueError(f"{len(answers)} answers for {len(cases)} cases")
    kinds = Counter(answer_kind(a) for a in answers)
    scored = [(a.score, c.iou >= RIGHT_IOU) for a, c in zip(answers, cases) if a.success and a.score is not None]
    scores = np.array([s for s, _ in scored], np.float64)
    right = np.array([r for _, r in scored], bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    table = [{"low": float(edges[b]), "high": float(edges[b + 1]), "count": int((which == b).sum()),
              "mean_score": float(scores[which == b].mean()) if (which == b).any() else float("nan"),
              "right": float(right[which == b].mean()) if (which == b).any() else float("nan")}
             for b in range(bins)]
    return {"kinds": dict(sorted(kinds.items())), "answered_share": len(scored) / max(len(answers), 1),
            "precision_answered": float(right.mean()) if len(right) else float("nan"),
            "right_iou": RIGHT_IOU, "reliability": table}
