"""What labels say about an alert: its severity, from the many spellings monitoring tools use, and its
fingerprint, a stable hash of the source and the alert's identity (a dedup key, or its labels).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from integrations.alerts.model import Severity

__all__ = ["make_fingerprint", "normalise_severity", "severity_from_labels"]


_SEVERITY_WORDS: dict[str, Severity] = {
    **dict.fromkeys(
        (
            "critical",
            "crit",
            "page",
            "paging",
            "error",
            "err",
            "high",
            "p0",
            "p1",
            "sev0",
            "sev1",
            "fatal",
            "emergency",
            "emerg",
            "alert",
            "disaster",
            "major",
            "urgent",
        ),
        "critical",
    ),
    **dict.fromkeys(
        ("warning", "warn", "medium", "moderate", "average", "p2", "p3", "sev2", "sev3", "minor"), "warning"
    ),
    **dict.fromkeys(
        (
            "info",
            "information",
            "informational",
            "notice",
            "debug",
            "low",
            "p4",
            "p5",
            "sev4",
            "sev5",
            "none",
            "unknown",
        ),
        "info",
    ),
}


def normalise_severity(value: object) -> Severity | None:
    """critical / warning / info for the usual spellings (page, error, high, P1 → critical; warn, medium, P2, P3 →
    warning; low, P4, P5, none, unknown → info), case-insensitively; None for anything else."""
    if not isinstance(value, str):
        return None
    return _SEVERITY_WORDS.get(value.strip().lower().replace("-", "").replace(" ", ""))


def severity_from_labels(labels: Mapping[str, str], default: Severity) -> Severity:
    """The normalised `severity` (else `priority`, else `level`) label; `default` when none is there or known."""
    for key in ("severity", "priority", "level"):
        found = normalise_severity(labels.get(key))
        if found is not None:
            return found
    return default


def make_fingerprint(source: str, identity: Mapping[str, str] | str) -> str:
    """A stable fingerprint: hex SHA-256 of the source and the identity (a dedup key, or labels sorted by name)."""
    if isinstance(identity, str):
        material: Any = [source, identity]
    else:
        material = [source, sorted(identity.items())]
    encoded = json.dumps(material, separators=(",", ":"), ensure_ascii=True).encode()
    return hashlib.sha256(encoded).hexdigest()
