"""An authoritative DNS server for the sandbox that answers from Route 53 (moto).

The failover switches traffic by UPSERTing a record in Route 53. Magento (the storefront
simulator) only ever sees that switch through DNS, so the sandbox needs a real DNS server
whose answers follow Route 53: every query reads the hosted zones afresh, which makes an
UPSERT visible to the very next query and leaves TTL-based caching to the clients, exactly
as with real Route 53 name servers.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dnslib import CLASS, EDNS0, OPCODE, QTYPE, RCODE, RR, DNSHeader, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

__all__ = ["Route53DnsServer"]

_LOG = logging.getLogger(__name__)

# How many CNAME hops one answer follows through the zones we serve (BIND uses 16; a sandbox
# chain is one or two hops, and a loop must not make the answer grow).
_MAX_CHAIN = 8
# How deep alias records may point at alias records.
_MAX_ALIAS_DEPTH = 4
# Plain DNS allows 512-byte UDP answers; with EDNS we accept up to the DNS Flag Day 2020 size.
_CLASSIC_UDP_PAYLOAD = 512
_EDNS_UDP_PAYLOAD = 1232
# Binding port 0 for UDP and reusing that number for TCP can collide; retry a few times.
_BIND_ATTEMPTS = 20
_STOP_TIMEOUT_S = 2.0
_POLL_INTERVAL_S = 0.05
_CLASS_ANY = 255  # dnslib names it "*", not reachable as an attribute
# Route 53 always creates an SOA; this is only used if a zone somehow lacks one.
_FALLBACK_SOA = "ns-0.awsdns-00.com. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"
# moto stores the SOA it creates as the repr of a dict: "{'Value': 'ns-... 86400'}".
_MOTO_REPR_VALUE = re.compile(r"^\{'Value': '(.*)'\}$", re.DOTALL)
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _canonical(name: str) -> str:
    """Lower-case FQDN with a trailing dot; Route 53's octal escapes (`\\052` = `*`) decoded."""
    name = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), name.strip()).lower()
    return name if name.endswith(".") else name + "."


def _suffixes(name: str) -> Iterator[str]:
    """`a.b.c.`, `b.c.`, `c.`, `.`: every name that could be a zone enclosing `name`."""
    while True:
        yield name
        if name == ".":
            return
        _, _, rest = name.partition(".")
        name = rest or "."


def _parent(name: str) -> str:
    return name.partition(".")[2] or "."


@dataclass(frozen=True)
class _RecordSet:
    """One Route 53 resource record set, names canonical, routing attributes kept."""

    name: str
    rtype: str
    ttl: int
    values: tuple[str, ...]
    alias: str | None = None
    set_id: str | None = None
    weight: int | None = None
    failover: str | None = None

    @classmethod
    def from_route53(cls, data: dict[str, Any]) -> _RecordSet:
        values = []
        for record in data.get("ResourceRecords", []):
            value = str(record.get("Value", ""))
            moto_repr = _MOTO_REPR_VALUE.match(value)
            values.append(moto_repr.group(1) if moto_repr else value)
        alias = data.get("AliasTarget")
        weight = data.get("Weight")
        return cls(
            name=_canonical(data["Name"]),
            rtype=str(data["Type"]).upper(),
            ttl=int(data.get("TTL", 0)),
            values=tuple(values),
            alias=_canonical(alias["DNSName"]) if alias else None,
            set_id=data.get("SetIdentifier"),
            weight=int(weight) if weight is not None else None,
            failover=data.get("Failover"),
        )


def _route(sets: list[_RecordSet]) -> list[_RecordSet]:
    """Pick the record sets Route 53 would answer with, given their routing policy.

    Weighted: one set drawn by weight. Failover: PRIMARY (health checks are not simulated).
    Any other policy (latency, geolocation, multivalue): every value, since the sandbox has
    no client location to choose by.
    """
    if len(sets) <= 1 or all(s.set_id is None for s in sets):
        return sets
    weighted = [s for s in sets if s.weight is not None]
    if weighted:
        positive = [s for s in weighted if s.weight]
        if not positive:
            return [random.choice(weighted)]
        return random.choices(positive, weights=[s.weight or 0 for s in positive])
    by_role = {s.failover: s for s in sets if s.failover}
    if by_role:
        return [by_role.get("PRIMARY") or next(iter(by_role.values()))]
    return sets


class _Zone:
    """Every hosted zone of one name, merged and indexed for authoritative lookups."""

    def __init__(self, name: str, record_sets: list[_RecordSet]) -> None:
        self.name = name
        self.rrsets: dict[str, dict[str, list[_RecordSet]]] = {}
        # Owner names plus every name between them and the apex (empty non-terminals exist).
        self.names: set[str] = {name}
        for rs in record_sets:
            if rs.name != name and not rs.name.endswith("." + name):
                continue  # not inside this zone; Route 53 would not have accepted it
            self.rrsets.setdefault(rs.name, {}).setdefault(rs.rtype, []).append(rs)
            owner = rs.name
            while owner != name and owner not in self.names:
                self.names.add(owner)
                owner = _parent(owner)

    def soa(self) -> _RecordSet:
        sets = self.rrsets.get(self.name, {}).get("SOA")
        if sets and sets[0].values:
            return sets[0]
        return _RecordSet(self.name, "SOA", 900, (_FALLBACK_SOA,))

    def cut(self, name: str) -> str | None:
        """The delegation point (non-apex NS) at or above `name`, the one nearest the apex."""
        found = None
        for owner in _suffixes(name):
            if owner == self.name:
                return found
            if "NS" in self.rrsets.get(owner, {}):
                found = owner
        return found

    def node(self, name: str) -> dict[str, list[_RecordSet]] | None:
        """Record sets at `name` by type (empty for an empty non-terminal); None if no such name.

        A name that does not exist is synthesised from the wildcard at its closest encloser.
        """
        if name in self.names:
            return self.rrsets.get(name, {})
        for ancestor in _suffixes(_parent(name)):
            if ancestor in self.names:
                return self.rrsets.get("*." + ancestor)
        return None


class _Snapshot:
    """What one query sees of Route 53: the zone list, and each zone's records when needed."""

    def __init__(self, client: Any, only: frozenset[str] | None = None) -> None:
        self._client = client
        self._zone_ids: dict[str, list[str]] = {}
        for page in client.get_paginator("list_hosted_zones").paginate():
            for zone in page.get("HostedZones", []):
                if only is None or zone["Id"].removeprefix("/hostedzone/") in only:
                    self._zone_ids.setdefault(_canonical(zone["Name"]), []).append(zone["Id"])
        self._zones: dict[str, _Zone] = {}

    def zone_for(self, name: str) -> _Zone | None:
        """The most specific served zone enclosing `name`, or None if we are not authoritative."""
        for candidate in _suffixes(name):
            if candidate in self._zone_ids:
                return self._load(candidate)
        return None

    def _load(self, zone_name: str) -> _Zone:
        if zone_name not in self._zones:
            paginator = self._client.get_paginator("list_resource_record_sets")
            record_sets = [
                _RecordSet.from_route53(data)
                for zone_id in self._zone_ids[zone_name]
                for page in paginator.paginate(HostedZoneId=zone_id)
                for data in page.get("ResourceRecordSets", [])
            ]
            self._zones[zone_name] = _Zone(zone_name, record_sets)
        return self._zones[zone_name]


def _make_rr(owner: DNSLabel, rtype: str, ttl: int, value: str) -> RR | None:
    """Parse one Route 53 value (zone-file syntax) into an RR; None, logged, if it is invalid."""
    parse_as = "TXT" if rtype == "SPF" else rtype
    try:
        (rr,) = RR.fromZone(f". {ttl} IN {parse_as} {value}")
        rr.rtype = getattr(QTYPE, rtype)
    except Exception:
        _LOG.warning("skipping unparsable %s value %r for %s", rtype, value, owner)
        return None
    rr.rname = owner
    return rr


class _Resolution:
    """Builds the answer to one question from one Route 53 snapshot."""

    def __init__(self, snapshot: _Snapshot, reply: DNSRecord) -> None:
        self.snapshot = snapshot
        self.reply = reply

    def run(self, asked: DNSLabel, qtype: str) -> None:
        name = _canonical(str(asked))
        zone = self.snapshot.zone_for(name)
        if zone is None:
            self.reply.header.rcode = RCODE.REFUSED
            return
        self.reply.header.aa = 1
        owner = asked  # the first owner name keeps the case the client asked in
        seen = {name}
        for hop in range(_MAX_CHAIN):
            cut = zone.cut(name)
            if cut is not None:
                if hop == 0:
                    self._referral(zone, cut)
                return  # a chain leaving our authority ends with the CNAME, as in BIND
            node = zone.node(name)
            if node is None:
                self.reply.header.rcode = RCODE.NXDOMAIN
                self._negative(zone)
                return
            if qtype == "ANY":
                for rtype in node:
                    self.reply.add_answer(*self._records(owner, rtype, node))
                if not self.reply.rr:
                    self._negative(zone)
                return
            answers = self._records(owner, qtype, node)
            if answers:
                self.reply.add_answer(*answers)
                if qtype == "NS":
                    self._glue(answers)
                return
            cnames = self._records(owner, "CNAME", node) if qtype != "CNAME" else []
            if not cnames:
                self._negative(zone)  # NODATA: the name exists, the type does not
                return
            self.reply.add_answer(cnames[0])
            name = _canonical(str(cnames[0].rdata.label))
            next_zone = self.snapshot.zone_for(name)
            if name in seen or next_zone is None:
                return
            seen.add(name)
            zone, owner = next_zone, DNSLabel(name)

    def _records(
        self, owner: DNSLabel, rtype: str, node: dict[str, list[_RecordSet]], depth: int = 0
    ) -> list[RR]:
        """The RRs of one type at a node, routing policy applied and aliases flattened."""
        result: list[RR] = []
        for rs in _route(node.get(rtype, [])):
            if rs.alias is not None:
                result += self._alias(owner, rtype, rs.alias, depth)
                continue
            for value in rs.values:
                rr = _make_rr(owner, rtype, rs.ttl, value)
                if rr is not None:
                    result.append(rr)
        unique: dict[tuple[int, str], RR] = {}
        for rr in result:
            unique.setdefault((rr.rtype, str(rr.rdata).lower()), rr)
        return list(unique.values())

    def _alias(self, owner: DNSLabel, rtype: str, target: str, depth: int) -> list[RR]:
        """An alias answers with its target's records (and TTL) under the alias's own name.

        Targets outside the zones we serve (ELB, CloudFront, S3 names) cannot be resolved
        here, so such an alias contributes nothing.
        """
        zone = self.snapshot.zone_for(target)
        node = zone.node(target) if zone is not None else None
        if node is None or depth >= _MAX_ALIAS_DEPTH:
            return []
        return self._records(owner, rtype, node, depth + 1)

    def _negative(self, zone: _Zone) -> None:
        """NXDOMAIN/NODATA carry the SOA, its TTL capped by the minimum field (RFC 2308)."""
        soa = zone.soa()
        rr = _make_rr(DNSLabel(zone.name), "SOA", soa.ttl, soa.values[0])
        if rr is None:
            rr = _make_rr(DNSLabel(zone.name), "SOA", soa.ttl, _FALLBACK_SOA)
        assert rr is not None
        rr.ttl = min(rr.ttl, rr.rdata.times[-1])
        self.reply.add_auth(rr)

    def _referral(self, zone: _Zone, cut: str) -> None:
        """A name below a delegation: not ours to answer, point at the child's name servers."""
        self.reply.header.aa = 0
        ns = self._records(DNSLabel(cut), "NS", zone.rrsets[cut])
        self.reply.add_auth(*ns)
        self._glue(ns)

    def _glue(self, ns_records: list[RR]) -> None:
        """Addresses of name servers that live in a zone we serve, for the additional section."""
        for ns in ns_records:
            target = _canonical(str(ns.rdata.label))
            zone = self.snapshot.zone_for(target)
            node = zone.node(target) if zone is not None else None
            if node:
                for rtype in ("A", "AAAA"):
                    self.reply.add_ar(*self._records(DNSLabel(target), rtype, node))


class _QuietLogger(DNSLogger):
    """dnslib prints every query by default; send it to `logging` at debug level instead."""

    def __init__(self) -> None:
        super().__init__(log="", prefix=False, logf=_LOG.debug)


class _ThreadedServerMixin:
    """Daemon threads per request; handler errors (client went away) logged, not printed."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        _LOG.debug("DNS handler failed for %s", client_address, exc_info=True)


class _UDPServer(_ThreadedServerMixin, socketserver.ThreadingMixIn, socketserver.UDPServer):
    # Without SO_REUSEADDR: on Linux it would let two servers silently share one UDP port.
    allow_reuse_address = False

    def __init__(self, server_address: tuple[str, int], handler: type[DNSHandler]) -> None:
        if ":" in server_address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(server_address, handler)


class _TCPServer(_ThreadedServerMixin, socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True  # for TCP this only skips TIME_WAIT; listeners stay exclusive

    def __init__(self, server_address: tuple[str, int], handler: type[DNSHandler]) -> None:
        if ":" in server_address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(server_address, handler)


class _Resolver(BaseResolver):
    """dnslib calls one resolver instance from many threads; it defers to the server."""

    def __init__(self, server: Route53DnsServer) -> None:
        self._server = server

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        return self._server._answer(request, getattr(handler, "protocol", "udp"))


class Route53DnsServer:
    """Authoritative DNS on loopback (UDP and TCP) for every hosted zone in Route 53 (moto)."""

    def __init__(
        self,
        route53_factory: Callable[[], Any],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        zone_ids: list[str] | None = None,
    ) -> None:
        """`zone_ids`: serve only these zones, as a VPC sees only the private zones associated
        with it; moto's state is per process, so another stack's zone of the same name may
        be there too."""
        self._factory = route53_factory
        self._only = (
            frozenset(z.removeprefix("/hostedzone/") for z in zone_ids) if zone_ids else None
        )
        self.host = host
        self.port = port
        self.queries = 0
        self._client: Any = None
        # botocore clients are thread-safe for calls, but creating one is not, and a single
        # lock keeps a slow Route 53 from being hit by every waiting query at once.
        self._client_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._servers: list[DNSServer] = []

    def __enter__(self) -> Route53DnsServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Listen on UDP and TCP on the same port (a free one if port is 0), each in a thread."""
        if self._servers:
            raise RuntimeError(f"DNS server already listening on {self.host}:{self.port}")
        udp, tcp = self._bind()
        for server in (udp, tcp):
            # Own thread instead of start_thread(): a short poll interval makes stop() prompt.
            server.thread = threading.Thread(
                target=server.server.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL_S},
                name=f"dns-{server.server.socket_type.name}-{self.host}",
                daemon=True,
            )
            server.thread.start()
        self._servers = [udp, tcp]
        self.port = int(udp.server.server_address[1])

    def stop(self) -> None:
        """Stop both listeners and release the port; safe to call twice."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.server.shutdown()
            server.server.server_close()
            server.thread.join(_STOP_TIMEOUT_S)
        with self._client_lock:
            client, self._client = self._client, None
        close = getattr(client, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()

    def _bind(self) -> tuple[DNSServer, DNSServer]:
        resolver = _Resolver(self)
        attempts = 1 if self.port else _BIND_ATTEMPTS
        last_error: OSError | None = None
        for _ in range(attempts):
            udp = self._listener(resolver, self.port, _UDPServer)
            port = int(udp.server.server_address[1])
            try:
                return udp, self._listener(resolver, port, _TCPServer)
            except OSError as exc:  # the UDP port's TCP twin is taken; try another number
                udp.server.server_close()
                last_error = exc
        assert last_error is not None
        raise OSError(
            last_error.errno,
            f"no port free for both UDP and TCP on {self.host} after {attempts} attempt(s): "
            f"{last_error}",
        ) from last_error

    def _listener(self, resolver: _Resolver, port: int, server: type) -> DNSServer:
        return DNSServer(
            resolver, address=self.host, port=port, logger=_QuietLogger(), server=server
        )

    # ------------------------------------------------------------------ answering

    def _answer(self, request: DNSRecord, protocol: str) -> DNSRecord:
        """Answer one query; any failure (Route 53 down included) becomes SERVFAIL."""
        try:
            reply = self._build(request)
        except Exception:
            _LOG.warning("answering %s failed; replying SERVFAIL", request.q.qname, exc_info=True)
            reply = request.reply(ra=0, aa=0)
            reply.header.rcode = RCODE.SERVFAIL
        reply = self._finish(request, reply, protocol)
        with self._count_lock:
            self.queries += 1
        return reply

    def _build(self, request: DNSRecord) -> DNSRecord:
        reply = request.reply(ra=0, aa=0)  # authoritative only: no recursion available
        reply.questions = list(request.questions)  # dnslib would invent one for a bare header
        question = request.q
        if request.header.opcode != OPCODE.QUERY:
            reply.header.rcode = RCODE.NOTIMP
        elif len(request.questions) != 1:
            reply.header.rcode = RCODE.FORMERR
        elif question.qclass not in (CLASS.IN, _CLASS_ANY):
            reply.header.rcode = RCODE.REFUSED
        elif question.qtype in (QTYPE.AXFR, QTYPE.IXFR):
            reply.header.rcode = RCODE.REFUSED  # Route 53 does not offer zone transfers
        else:
            with self._client_lock:
                if self._client is None:
                    self._client = self._factory()
                snapshot = _Snapshot(self._client, self._only)
                _Resolution(snapshot, reply).run(question.qname, QTYPE[question.qtype])
        return reply

    def _finish(self, request: DNSRecord, reply: DNSRecord, protocol: str) -> DNSRecord:
        """Echo EDNS if the client used it, and truncate UDP answers that would not fit."""
        opt = next((rr for rr in request.ar if rr.rtype == QTYPE.OPT), None)
        limit = _CLASSIC_UDP_PAYLOAD
        if opt is not None:
            limit = max(_CLASSIC_UDP_PAYLOAD, min(opt.edns_len, _EDNS_UDP_PAYLOAD))
            reply.add_ar(EDNS0(udp_len=_EDNS_UDP_PAYLOAD))
        if protocol != "udp" or len(reply.pack()) <= limit:
            return reply
        truncated = DNSRecord(
            DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap, tc=1), q=request.q
        )
        if opt is not None:
            truncated.add_ar(EDNS0(udp_len=_EDNS_UDP_PAYLOAD))
        return truncated
