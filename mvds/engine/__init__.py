"""The sans-IO MVDS protocol engine and its vocabulary."""

from mvds.engine.config import EngineConfig
from mvds.engine.engine import Engine
from mvds.engine.events import (
    Event,
    GaveUp,
    MessageAcknowledged,
    MessageReceived,
    MessageRefused,
    PeerReachable,
)
from mvds.engine.policy import (
    ExponentialBackoff,
    LinearBackoff,
    QuadraticBackoff,
    RetransmissionPolicy,
    policy_by_name,
)
from mvds.engine.records import Delivery, Mode, Record, RecordType

__all__ = [
    "Delivery",
    "Engine",
    "EngineConfig",
    "Event",
    "ExponentialBackoff",
    "GaveUp",
    "LinearBackoff",
    "MessageAcknowledged",
    "MessageReceived",
    "MessageRefused",
    "Mode",
    "PeerReachable",
    "QuadraticBackoff",
    "Record",
    "RecordType",
    "RetransmissionPolicy",
    "policy_by_name",
]
