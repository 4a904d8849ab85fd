"""The paper's claims versus what a run measured (``claims.csv``).

The claims are data: ``leap/workflow/resources/claims.yaml`` (:func:`load_claims`), each naming a
registered measurement and, where the paper makes a qualitative statement, a direction
(:mod:`leap.workflow.claim_measures`). Every claim gets ``claim, paper, measured, unit, verdict``,
then ``reason``, ``variant`` (the exit objective a LEAP claim was measured on)
and ``source`` (sentence set, layers, device). The verdict vocabulary:

* ``reproduced``: every measured value lies within the claim's tolerance of the paper's;
* ``direction holds``: the numbers differ, but the qualitative statement the paper makes
  with them holds, compared on the same quantity (the reason says which);
* ``differs``: measured, and neither;
* ``not comparable``: what was measured is not the quantity the paper reports (another
  device or precision, one benchmark of five); the value is shown, not judged;
* ``not measured``: the configuration has no run for it (the reason says what is missing).

An exit-based claim cannot be ``reproduced`` or ``direction holds`` when (almost) nothing
exits: below :data:`MIN_EXIT_RATE` of inputs leaving early, a score is a full-depth score.
Claims about LEAP are repeated for every extra exit objective of the run (``variant``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from leap.errors import LeapError
from leap.workflow.claim_measures import DIRECTIONS, MEASUREMENTS, MIN_EXIT_RATE, Measured
from leap.workflow.records import Diagnostic
from leap.workflow.results import collect, extra_variants, load_json, runs

CLAIMS_FILE = Path(__file__).parent / "resources" / "claims.yaml"
VERDICTS = ("reproduced", "direction holds", "differs", "not comparable", "not measured")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper (an entry of the claims file).

    ``paper``: the paper's numbers (in the claim's order) and ``display`` its text; ``tol``:
    the tolerance of each number for ``reproduced``; ``measure`` / ``direction``: names in
    :data:`leap.workflow.claim_measures.MEASUREMENTS` / :data:`~leap.workflow.claim_measures.DIRECTIONS`, with
    their keyword arguments; ``exit_based``: the claim needs exits; ``per_variant``: it is
    about LEAP and is repeated for each extra exit objective.
    """

    claim: str
    display: str
    paper: tuple[float, ...]
    unit: str
    measure: str
    args: dict[str, Any] = field(default_factory=dict)
    tol: tuple[float, ...] | None = None
    direction: str | None = None
    direction_args: dict[str, Any] = field(default_factory=dict)
    exit_based: bool = False
    per_variant: bool = False

    @classmethod
    def from_entry(cls, e: dict[str, Any], where: str) -> Claim:
        known = {"claim", "paper", "values", "unit", "measure", "args", "tolerance", "direction"}
        known |= {"direction_args", "exit_based", "per_variant"}
        unknown = sorted(set(e) - known)
        missing = sorted({"claim", "paper", "values", "unit", "measure"} - set(e))
        if unknown or missing:
            raise LeapError(f"{where}: unknown keys {unknown} / missing keys {missing}; keys are {sorted(known)}")
        if e["measure"] not in MEASUREMENTS:
            raise LeapError(f"{where}: unknown measure {e['measure']!r}; registered: {sorted(MEASUREMENTS)}")
        if e.get("direction") is not None and e["direction"] not in DIRECTIONS:
            raise LeapError(f"{where}: unknown direction {e['direction']!r}; registered: {sorted(DIRECTIONS)}")
        tol = tuple(float(x) for x in e["tolerance"]) if e.get("tolerance") is not None else None
        values = tuple(float(x) for x in e["values"])
        if tol is not None and len(tol) != len(values):
            raise LeapError(f"{where}: {len(values)} values but {len(tol)} tolerances")
        return cls(
            claim=str(e["claim"]),
            display=str(e["paper"]),
            paper=values,
            unit=str(e["unit"]),
            measure=e["measure"],
            args=dict(e.get("args") or {}),
            tol=tol,
            direction=e.get("direction"),
            direction_args=dict(e.get("direction_args") or {}),
            exit_based=bool(e.get("exit_based", False)),
            per_variant=bool(e.get("per_variant", False)),
        )


def load_claims(path: str | os.PathLike | None = None) -> list[Claim]:
    """The claims of a claims file (default: the paper's, ``leap/workflow/resources/claims.yaml``)."""
    return list(_load(str(path or CLAIMS_FILE)))


@cache
def _load(path: str) -> tuple[Claim, ...]:
    import yaml

    entries = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
    if not isinstance(entries, list):
        raise LeapError(f"{path}: expected a list of claims")
    return tuple(Claim.from_entry(e, f"{path}, claim {i + 1}") for i, e in enumerate(entries))


def verdict(c: Claim, m: Measured, res: dict, variant: str) -> tuple[str, str]:
    """``(verdict, reason)`` of one claim for one variant (see the module docstring)."""
    if m.values is None:
        if m.not_comparable:
            return "not comparable", m.not_comparable
        return "not measured", m.note or "no run"
    if m.not_comparable:
        return "not comparable", m.not_comparable
    if c.exit_based and m.exit_rate is not None and m.exit_rate < MIN_EXIT_RATE:
        return "differs", (
            f"only {100 * m.exit_rate:.2f}% of inputs exit early (< {100 * MIN_EXIT_RATE:.0f}%): "
            "the score is a full-depth score, not an exit result"
        )
    far = [abs(x - p) for x, p in zip(m.values, c.paper)]
    if c.tol is not None and len(m.values) == len(c.paper) and all(f <= t for f, t in zip(far, c.tol)):
        return "reproduced", "every value within tolerance (" + ", ".join(f"+/-{t:g}" for t in c.tol) + ")"
    if c.direction is not None:
        try:
            holds, why = DIRECTIONS[c.direction](m, res, variant, **c.direction_args)
        except (KeyError, IndexError, TypeError, ZeroDivisionError) as err:
            return "differs", f"the comparison could not be made ({type(err).__name__})"
        if holds:
            return "direction holds", why
        return "differs", why
    return "differs", "outside tolerance: " + ", ".join(f"{x:.3g} vs {p:.3g}" for x, p in zip(m.values, c.paper))


def _measure(c: Claim, res: dict, diag: dict, v: str) -> Measured:
    try:
        return MEASUREMENTS[c.measure](res, diag, v, **c.args)
    except (KeyError, IndexError, TypeError, ZeroDivisionError) as err:
        return Measured(None, note=f"could not compute ({type(err).__name__}: {err})")


def build_claims(
    eval_paths: Iterable[str | os.PathLike], diagnostics: dict[str, str | os.PathLike] | None = None
) -> pd.DataFrame:
    """One row per claim of the claims file for ``leap`` (the paper's objective) and, for
    the claims about LEAP, one per extra exit objective of the run."""
    res = collect(eval_paths)
    diag = {k: Diagnostic.from_dict(load_json(p)) for k, p in (diagnostics or {}).items()}
    extras = [v for v in extra_variants(res) if runs(res, v, "stsb")]
    rows = []
    for c in load_claims():
        for v in ("leap", *extras) if c.per_variant else ("leap",):
            m = _measure(c, res, diag, v)
            verdict_, reason = verdict(c, m, res, v)
            rows.append(
                {
                    "claim": c.claim,
                    "paper": c.display,
                    "measured": m.text,
                    "unit": c.unit,
                    "verdict": verdict_,
                    "reason": reason,
                    "variant": v if c.per_variant else "",
                    "source": m.note,
                }
            )
    return pd.DataFrame(rows)
