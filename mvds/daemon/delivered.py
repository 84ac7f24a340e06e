"""The message a node hands to its application: :class:`DeliveredMessage`.

Built from the store (durable messages, by seq) or from the engine's
:class:`~mvds.engine.MessageReceived` event (ephemeral ones, never stored),
and written out as the JSON object ``mvds tail --json`` prints and the
control API streams.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from mvds.store.base import StoredMessage

_json_string = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
"""A str as a JSON string literal, as json.dumps writes it (ensure_ascii)."""


@dataclass(frozen=True)
class DeliveredMessage:
    """A message handed to the application (the node's output; the engine's
    event for the same moment is :class:`mvds.engine.MessageReceived`).

    ``seq`` is the node's local delivery number (None for ephemeral
    messages, which are never stored); resume reading after it with
    ``Node.messages(since=seq)``.  Received messages and (with
    ``own=True``) the node's own appends share this one sequence.

    ``sender`` (``via`` in JSON) is the neighbour the message arrived from,
    the last hop, NOT its author: MVDS messages carry no author.  An
    application that needs one puts it in the body (a name prefix, or a
    signature over the body with the author's key).  None for own messages.
    ``group`` is the group's name where the node knows it (else None).
    """

    seq: int | None
    group_id: bytes
    id: bytes
    timestamp: int
    body: bytes
    sender: bytes | None
    ephemeral: bool = False
    group: str | None = None

    @property
    def via(self) -> bytes | None:
        """The neighbour it arrived from (the last hop; None for own messages)."""
        return self.sender

    @property
    def own(self) -> bool:
        """Appended by this node (not received)."""
        return self.sender is None and not self.ephemeral

    def __repr__(self) -> str:
        text = self.text
        body = repr(text[:40] + ("..." if len(text) > 40 else "")) if text is not None else (
            f"<{len(self.body)} bytes>")
        group = self.group if self.group is not None else self.group_id.hex()[:8]
        origin = "own" if self.own else f"via={self.sender.hex()[:8] if self.sender else '-'}"
        return (f"<DeliveredMessage seq={self.seq} group={group!r} id={self.id.hex()[:8]} "
                f"{origin}{' ephemeral' if self.ephemeral else ''} body={body}>")

    @property
    def text(self) -> str | None:
        """The body as text if it is valid UTF-8."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``mvds tail --json`` prints."""
        out: dict[str, Any] = {
            "seq": self.seq,
            "group": self.group_id.hex(),
            "id": self.id.hex(),
            "timestamp": self.timestamp,
            "body_b64": base64.b64encode(self.body).decode("ascii"),
        }
        text = self.text
        if text is not None:
            out["text"] = text
        if self.sender is not None:
            out["via"] = out["from"] = self.sender.hex()  # "from": deprecated, same value
        elif not self.ephemeral:
            out["own"] = True
        if self.ephemeral:
            out["ephemeral"] = True
        return out

    def event_line(self) -> str:
        """``{"event":"message","message":<to_json()>}`` as one compact JSON
        line, byte for byte what ``json.dumps(..., separators=(",", ":"))``
        gives, built directly: a subscription streams one per message."""
        parts = [
            '{"event":"message","message":{"seq":',
            "null" if self.seq is None else str(self.seq),
            ',"group":"', self.group_id.hex(),
            '","id":"', self.id.hex(),
            '","timestamp":', str(self.timestamp),
            ',"body_b64":"', base64.b64encode(self.body).decode("ascii"), '"',
        ]
        text = self.text
        if text is not None:
            parts += (',"text":', _json_string(text))
        if self.sender is not None:
            via = self.sender.hex()
            parts += (',"via":"', via, '","from":"', via, '"')
        elif not self.ephemeral:
            parts.append(',"own":true')
        if self.ephemeral:
            parts.append(',"ephemeral":true')
        parts.append("}}")
        return "".join(parts)

    @classmethod
    def from_stored(
        cls, stored: StoredMessage, names: dict[bytes, str] | None = None
    ) -> "DeliveredMessage":
        m = stored.message
        group = names.get(m.group_id) if names else None
        return cls(stored.seq, m.group_id, m.id, m.timestamp, m.body, stored.received_from,
                   False, group)


ReceivedMessage = DeliveredMessage
"""The earlier name, kept for embedding code that imports it."""
