"""/status: health probes, their stored history, SLO maths and the one-message overview."""
