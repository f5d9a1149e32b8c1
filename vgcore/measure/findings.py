"""A diagnosis's result: :class:`Finding` (kind, severity, message, evidence, fix) and
:func:`format_findings`, the readable text of a list of them."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from vgcore.measure._diagnosis_words import _ev

__all__ = ["Finding", "format_findings", "SEVERITIES"]

SEVERITIES = ("info", "warning", "error")


@dataclass(frozen=True)
class Finding:
    """One diagnosis.

    Parameters
    ----------
    kind : str
        ``"vanishing"``, ``"exploding"``, ``"saturation"``, ``"dead_units"``, ``"nonfinite"``,
        ``"no_gradient"`` or ``"healthy"`` (see :data:`KINDS`).
    severity : {"info", "warning", "error"}
    message : str
        Plain language, starting with the kind: what is wrong, where, and what to try.
    evidence : dict
        The numbers behind the message (plain Python numbers, strings and lists).
    fix : str
        The suggested remedies, with reasons.
    """

    kind: str
    severity: str
    message: str
    evidence: dict = field(default_factory=dict)
    fix: str = ""

    def __post_init__(self):
        for name in ("kind", "message", "fix"):
            v = getattr(self, name)
            if not isinstance(v, str):
                raise TypeError(f"{name}: expected a str, got {type(v).__name__}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity: expected one of {', '.join(SEVERITIES)}, got "
                             f"{self.severity!r}")
        if not isinstance(self.evidence, dict):
            raise TypeError(f"evidence: expected a dict, got {type(self.evidence).__name__}")

    def __str__(self):
        return format_findings([self])


def format_findings(findings) -> str:
    """Findings as readable text: one block per finding (severity, message, evidence, fix).

    Parameters
    ----------
    findings : iterable of Finding

    Returns
    -------
    str
    """
    if isinstance(findings, Finding):
        findings = [findings]
    if isinstance(findings, (str, bytes, dict)) or not hasattr(findings, "__iter__"):
        raise TypeError(f"findings: expected an iterable of Finding, got "
                        f"{type(findings).__name__}")
    findings = list(findings)
    for i, f in enumerate(findings):
        if not isinstance(f, Finding):
            raise TypeError(f"findings: expected Finding objects, got {type(f).__name__} at "
                            f"position {i}")
    if not findings:
        return "no findings"
    blocks = []
    for f in findings:
        lines = textwrap.wrap(f"[{f.severity.upper()}] {f.message}", 100,
                              subsequent_indent="    ")
        if f.evidence:
            ev = ", ".join(f"{k}={_ev(v)}" for k, v in f.evidence.items())
            lines += textwrap.wrap("evidence: " + ev, 100, initial_indent="    ",
                                   subsequent_indent="        ")
        if f.fix:
            lines += textwrap.wrap("fix: " + f.fix, 100, initial_indent="    ",
                                   subsequent_indent="        ")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)
