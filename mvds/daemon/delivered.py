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
    ``Node.messages(since=seq)``.
    """

    seq: int | None
    group_id: bytes
    id: bytes
    timestamp: int
    body: bytes
    sender: bytes | None
    ephemeral: bool = False

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
            out["from"] = self.sender.hex()
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
            parts += (',"from":"', self.sender.hex(), '"')
        if self.ephemeral:
            parts.append(',"ephemeral":true')
        parts.append("}}")
        return "".join(parts)

    @classmethod
    def from_stored(cls, stored: StoredMessage) -> "DeliveredMessage":
        m = stored.message
        return cls(stored.seq, m.group_id, m.id, m.timestamp, m.body, stored.received_from)


ReceivedMessage = DeliveredMessage
"""The earlier name, kept for embedding code that imports it."""
