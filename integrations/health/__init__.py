"""Health probes: the HTTP probe and the gate a deploy step must pass before the next one."""

from integrations.health.http import (
    GateResult,
    HttpHealthSettings,
    ProbeResult,
    health_gate,
    probe,
)

__all__ = ["GateResult", "HttpHealthSettings", "ProbeResult", "health_gate", "probe"]
