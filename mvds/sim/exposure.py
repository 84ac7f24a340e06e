"""What each node could observe: the privacy question from the research notes.

MVDS messages carry no author, but every record a node receives tells it
something.  A MESSAGE shows the content (and so, to anyone who can read it,
whose message it is); an ACK or OFFER of an id says the sender *holds* that
message; a REQUEST says the sender wants it.  Chaining those: when D receives
from B a message that A wrote, D learns that B is in contact with A, although
D never talked to A.

The simulator knows every message's true author, so for each node it reports:

* ``ids_seen``: message ids named in anything it received (any record type);
* ``held``: messages whose content it received;
* ``authors``: whose messages it received (content) or saw named;
* ``contacts``: the peers that sent it anything (its direct relationships);
* ``relationships``: pairs (holder, author) it can infer from "holder told
  me it has / sent me author's message", holder being neither the node nor
  the author - who talks to whom, beyond its own contacts.
"""

from __future__ import annotations

from mvds.wire import Payload


class Exposure:
    """Accumulates per-node observations as payloads arrive."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        count = len(names)
        self.seen: list[set[bytes]] = [set() for _ in range(count)]
        self.held: list[set[bytes]] = [set() for _ in range(count)]
        self.contacts: list[set[int]] = [set() for _ in range(count)]
        self.authors_seen: list[set[int]] = [set() for _ in range(count)]
        self.authors_held: list[set[int]] = [set() for _ in range(count)]
        self.relationships: list[set[tuple[int, int]]] = [set() for _ in range(count)]

    def observe(self, node: int, sender: int, payload: Payload, author_of: dict[bytes, int]) -> None:
        """``node`` received ``payload`` from ``sender``."""
        self.contacts[node].add(sender)
        seen = self.seen[node]
        authors_seen = self.authors_seen[node]
        relationships = self.relationships[node]
        # ACK and OFFER: the sender holds the message.
        for ids in (payload.acks, payload.offers) if payload.acks or payload.offers else ():
            for mid in ids:
                seen.add(mid)
                author = author_of.get(mid)
                if author is not None:
                    authors_seen.add(author)
                    if author != sender and author != node:
                        relationships.add((sender, author))
        # REQUEST: the sender wants it.
        for mid in payload.requests:
            seen.add(mid)
            author = author_of.get(mid)
            if author is not None:
                authors_seen.add(author)
        # MESSAGE: the content itself.
        if payload.messages:
            held = self.held[node]
            authors_held = self.authors_held[node]
            for message in payload.messages:
                mid = message.id
                seen.add(mid)
                held.add(mid)
                author = author_of.get(mid)
                if author is not None:
                    authors_seen.add(author)
                    authors_held.add(author)
                    if author != sender and author != node:
                        relationships.add((sender, author))

    def report(self, detail: bool) -> dict[str, dict[str, object]]:
        """Per node name: counts, and with ``detail`` the names involved."""
        names = self.names
        out: dict[str, dict[str, object]] = {}
        for index, name in enumerate(names):
            entry: dict[str, object] = {
                "ids_seen": len(self.seen[index]),
                "held": len(self.held[index]),
                "authors_seen": len(self.authors_seen[index]),
                "authors_held": len(self.authors_held[index]),
                "contacts": len(self.contacts[index]),
                "relationships": len(self.relationships[index]),
            }
            if detail:
                entry["authors_seen_names"] = sorted(names[a] for a in self.authors_seen[index])
                entry["authors_held_names"] = sorted(names[a] for a in self.authors_held[index])
                entry["contact_names"] = sorted(names[c] for c in self.contacts[index])
                entry["relationship_pairs"] = sorted(
                    f"{names[h]}~{names[a]}" for h, a in self.relationships[index]
                )
                entry["ids_seen_hex"] = sorted(mid[:4].hex() for mid in self.seen[index])
            out[name] = entry
        return out
