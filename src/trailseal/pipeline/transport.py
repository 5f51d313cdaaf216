"""How a relay hands a batch of events on: to the service over HTTP, or to a broker.

A transport takes a batch of encoded events (each the JSON of one event, with its id) and
answers only when the batch is safely taken — a 2xx from the service, or every publisher
confirm/ack from the broker — or raises. Events it knows can never be taken are reported
back so the caller can set them aside instead of retrying forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class TransportError(Exception):
    """The batch was not taken; retry later (network, 5xx, broker down)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass
class Delivered:
    """The outcome of one batch: everything was taken except ``rejected`` (by index),
    which will never be taken (invalid events), with the reason."""

    rejected: dict[int, str] = field(default_factory=dict)


class Transport(Protocol):
    """Where a relay sends events."""

    def send(self, events: list[bytes]) -> Delivered:
        """Send one batch; raise TransportError if it was not (wholly) taken."""

    def close(self) -> None:
        """Release connections."""
