"""How the alert consumer shares one process with the webhooks that feed it: pure logic, no I/O.

The webhook answers 2xx once its alerts are in the Redis Stream; the consumer then folds them into groups. Both run
on one event loop. While the consumer keeps up, it waits on the stream and takes nothing from the webhooks. When
webhooks arrive faster than it folds them in (it read a full batch, so more is waiting) and keep arriving, each batch
it delivers is followed by a rest in proportion to the batch's time: the webhooks keep most of the loop, and the
consumer keeps a fixed share, so delivery never stops, and once the webhooks pause it runs flat out until the backlog
is gone. An accepted alert is stored either way; what a sender is refused or kept waiting for, it may never resend.
The message flusher, which the consumer's changes keep busy, rests the same way (Slack would rate-limit its updates
in such a storm anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

# Under a backlog with webhooks still arriving, the consumer rests this many times as long as its last batch took:
# 3.0 leaves it at most a quarter of the loop's time (bench/README.md, "The webhooks first", measures both sides).
REST_PER_BUSY = 3.0
# No single rest is longer than this, so a slow batch (Redis failing over, say) cannot park delivery for long.
MAX_REST_SECONDS = 1.0


@dataclass(frozen=True)
class Batch:
    """What one pass of a background loop did: how long it took, whether it is behind (the consumer read as many
    entries as it asked for, so more were waiting; the flusher had messages to post or update), and how many
    webhooks were stored while it ran."""

    seconds: float
    behind: bool
    webhooks_meanwhile: int


def rest_after(batch: Batch, *, rest_per_busy: float = REST_PER_BUSY, max_rest: float = MAX_REST_SECONDS) -> float:
    """Seconds a loop rests after `batch`: none while it keeps up or no webhook waits on it, else in proportion to
    the batch's time (capped)."""
    if not batch.behind or batch.webhooks_meanwhile <= 0 or batch.seconds <= 0:
        return 0.0
    return min(max_rest, batch.seconds * rest_per_busy)
