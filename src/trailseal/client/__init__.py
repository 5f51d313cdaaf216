"""The trailseal SDK: record audit events from Python applications.

::

    from trailseal.client import AuditClient

    audit = AuditClient("https://audit.example.com", token, spool_path="/var/spool/audit")
    audit.record("user.role.updated", actor=("user", "7"), target=("user", "42"),
                 before={"role": "viewer"}, after={"role": "admin"})

``record()`` returns in microseconds with the event safe in a local spool; a background
thread delivers it. See docs/sdk.md.
"""

from trailseal.client.context import RequestContext, current, request_context, set_actor
from trailseal.client.core import AsyncAuditClient, AuditClient, InvalidEvent
from trailseal.client.diff import DEFAULT_REDACT, REDACTED, compute_changes, redact
from trailseal.client.outbox import record_in_transaction, set_audit_context
from trailseal.integrity.receipt import CheckedReceipt, ReceiptError, verify_receipt

__all__ = [
    "DEFAULT_REDACT",
    "REDACTED",
    "AsyncAuditClient",
    "AuditClient",
    "CheckedReceipt",
    "InvalidEvent",
    "ReceiptError",
    "RequestContext",
    "compute_changes",
    "current",
    "record_in_transaction",
    "redact",
    "request_context",
    "set_actor",
    "set_audit_context",
    "verify_receipt",
]
