"""Comparing two versions on the requests both answered (a shadow run pairs them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from modelserve.lifecycle.schemas import ComparisonPublic
from modelserve.predictions.models import Prediction

MAX_PAIRS = 10_000
"""Most recent request pairs compared, so the summary stays cheap on a long log."""


def paired_outputs(
    session: Session, model_id: int, a_id: int, b_id: int, limit: int = MAX_PAIRS
) -> Sequence[tuple[Any, Any]]:
    """(outputs of a, outputs of b) for the newest requests both versions answered."""
    left, right = aliased(Prediction), aliased(Prediction)
    statement = (
        select(left.outputs, right.outputs)
        .join(right, right.request_id == left.request_id)
        .where(
            left.model_id == model_id,
            left.model_version_id == a_id,
            right.model_version_id == b_id,
            left.status == "ok",
            right.status == "ok",
        )
        .order_by(left.id.desc())
        .limit(limit)
    )
    return [(a, b) for a, b in session.execute(statement).all()]


def summarise(model: str, a: int, b: int, pairs: Sequence[tuple[Any, Any]]) -> ComparisonPublic:
    """Agreement rate and mean absolute differences over every row of every pair."""
    rows = agree = 0
    prob_diffs: list[float] = []
    value_diffs: list[float] = []
    for out_a, out_b in pairs:
        preds_a, preds_b = out_a.get("predictions", []), out_b.get("predictions", [])
        probs_a = out_a.get("probabilities") or [None] * len(preds_a)
        probs_b = out_b.get("probabilities") or [None] * len(preds_b)
        for pa, pb, qa, qb in zip(preds_a, preds_b, probs_a, probs_b, strict=False):
            rows += 1
            agree += pa == pb
            if qa is not None and qb is not None:
                labels = set(qa) | set(qb)
                prob_diffs.extend(abs(qa.get(k, 0.0) - qb.get(k, 0.0)) for k in labels)
            if _is_number(pa) and _is_number(pb):
                value_diffs.append(abs(float(pa) - float(pb)))
    return ComparisonPublic(
        model=model,
        a=a,
        b=b,
        requests=len(pairs),
        rows=rows,
        agreement_rate=agree / rows if rows else None,
        mean_abs_probability_diff=_mean(prob_diffs),
        mean_abs_prediction_diff=_mean(value_diffs),
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
