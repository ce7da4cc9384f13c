"""The sandbox DNS server must answer like an authoritative Route 53 name server.

Queries go over real UDP/TCP with dnspython, records are written to moto with boto3, so a
failover's UPSERT is observed exactly as the storefront would observe it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import httpx
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from sandbox.dns_server import Route53DnsServer
from sandbox.net import free_port

ZONE = "shop.internal."
RECORD = "search.shop.internal"
PRIMARY_HOST = "es-primary.shop.internal"
STANDBY_HOST = "es-standby.shop.internal"
PRIMARY_IPS = ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
STANDBY_IPS = ["127.0.2.1", "127.0.2.2", "127.0.2.3"]
A_TTL = 30
TIMEOUT_S = 2.0


def route53_client(endpoint: str, **config: Any) -> Any:
    return boto3.client(
        "route53",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**config) if config else None,
    )


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def dns_server(moto_endpoint: str) -> Iterator[Route53DnsServer]:
    with Route53DnsServer(lambda: route53_client(moto_endpoint)) as server:
        yield server


@pytest.fixture
def route53(moto_endpoint: str) -> Any:
    # moto keeps one state per process: start every test from an empty Route 53.
    httpx.post(f"{moto_endpoint}/moto-api/reset").raise_for_status()
    return route53_client(moto_endpoint)


def rrset(name: str, rtype: str, ttl: int, values: list[str]) -> dict[str, Any]:
    return {
        "Name": name,
        "Type": rtype,
        "TTL": ttl,
        "ResourceRecords": [{"Value": value} for value in values],
    }


def upsert(route53: Any, zone_id: str, *record_sets: dict[str, Any]) -> None:
    changes = [{"Action": "UPSERT", "ResourceRecordSet": rs} for rs in record_sets]
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})


@pytest.fixture
def zone_id(route53: Any) -> str:
    zone = route53.create_hosted_zone(Name=ZONE, CallerReference=uuid.uuid4().hex)
    zone_id: str = zone["HostedZone"]["Id"]
    upsert(
        route53,
        zone_id,
        rrset(RECORD, "CNAME", 1, [PRIMARY_HOST]),
        rrset(PRIMARY_HOST, "A", A_TTL, PRIMARY_IPS),
        rrset(STANDBY_HOST, "A", A_TTL, STANDBY_IPS),
    )
    return zone_id


def resolver_for(server: Route53DnsServer, *, cached: bool = False) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server.host]
    resolver.port = server.port
    resolver.lifetime = TIMEOUT_S
    if cached:
        resolver.cache = dns.resolver.Cache()
    return resolver


def addresses(answer: dns.resolver.Answer) -> list[str]:
    return sorted(rdata.address for rdata in answer)


def ask(
    server: Route53DnsServer, name: str, rtype: str = "A", *, tcp: bool = False
) -> dns.message.Message:
    query = dns.message.make_query(name, rtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, server.host, port=server.port, timeout=TIMEOUT_S)


def sections(rrsets: list[Any]) -> dict[tuple[str, str], Any]:
    return {(r.name.to_text().lower(), dns.rdatatype.to_text(r.rdtype)): r for r in rrsets}


# --------------------------------------------------------------------------- answers


def test_cname_chain_resolves_to_the_primary_nodes(
    dns_server: Route53DnsServer, zone_id: str
) -> None:
    answer = resolver_for(dns_server).resolve(RECORD, "A")
    assert addresses(answer) == PRIMARY_IPS
    assert answer.canonical_name == dns.name.from_text(PRIMARY_HOST)
    assert [n.to_text() for n in answer.chaining_result.cnames[0]] == [PRIMARY_HOST + "."]


def test_answers_are_authoritative_with_route53_ttls(
    dns_server: Route53DnsServer, zone_id: str
) -> None:
    response = ask(dns_server, RECORD)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert not response.flags & dns.flags.RA  # authoritative only, no recursion
    answer = sections(response.answer)
    assert set(answer) == {(RECORD + ".", "CNAME"), (PRIMARY_HOST + ".", "A")}
    assert answer[RECORD + ".", "CNAME"].ttl == 1
    assert answer[PRIMARY_HOST + ".", "A"].ttl == A_TTL
    assert sorted(r.address for r in answer[PRIMARY_HOST + ".", "A"]) == PRIMARY_IPS


def test_names_match_case_insensitively(dns_server: Route53DnsServer, zone_id: str) -> None:
    response = ask(dns_server, "SEARCH.Shop.Internal")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.question[0].name.to_text() == "SEARCH.Shop.Internal."  # echoed as asked
    answer = sections(response.answer)
    assert sorted(r.address for r in answer[PRIMARY_HOST + ".", "A"]) == PRIMARY_IPS


def test_upsert_is_visible_to_the_next_query(
    dns_server: Route53DnsServer, route53: Any, zone_id: str
) -> None:
    resolver = resolver_for(dns_server)
    assert addresses(resolver.resolve(RECORD, "A")) == PRIMARY_IPS
    upsert(route53, zone_id, rrset(RECORD, "CNAME", 1, [STANDBY_HOST]))
    answer = resolver.resolve(RECORD, "A")
    assert addresses(answer) == STANDBY_IPS
    assert answer.canonical_name == dns.name.from_text(STANDBY_HOST)


def test_caching_resolver_sees_the_switch_once_the_ttl_expires(
    dns_server: Route53DnsServer, route53: Any, zone_id: str
) -> None:
    cached = resolver_for(dns_server, cached=True)
    first = cached.resolve(RECORD, "A")
    assert addresses(first) == PRIMARY_IPS
    # The chain's TTL is the smallest in it: the CNAME's 1 s.
    assert first.expiration - time.time() <= 1.0
    upsert(route53, zone_id, rrset(RECORD, "CNAME", 1, [STANDBY_HOST]))

    asked_before = dns_server.queries
    assert time.time() < first.expiration, "test setup took longer than the 1 s TTL"
    assert addresses(cached.resolve(RECORD, "A")) == PRIMARY_IPS
    assert dns_server.queries == asked_before  # answered from the client's cache
    assert addresses(resolver_for(dns_server).resolve(RECORD, "A")) == STANDBY_IPS

    deadline = time.monotonic() + 3.0
    while addresses(cached.resolve(RECORD, "A")) != STANDBY_IPS:
        assert time.monotonic() < deadline, "cached answer outlived its 1 s TTL"
        time.sleep(0.05)
    assert time.time() >= first.expiration


def test_tcp_gives_the_same_answer(dns_server: Route53DnsServer, zone_id: str) -> None:
    response = ask(dns_server, RECORD, tcp=True)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    answer = sections(response.answer)
    assert sorted(r.address for r in answer[PRIMARY_HOST + ".", "A"]) == PRIMARY_IPS
    assert answer[RECORD + ".", "CNAME"][0].target.to_text() == PRIMARY_HOST + "."


def test_other_record_types(dns_server: Route53DnsServer, route53: Any, zone_id: str) -> None:
    upsert(
        route53,
        zone_id,
        rrset("txt.shop.internal", "TXT", 60, ['"cluster=es-primary" "rev=2"']),
        rrset("v6.shop.internal", "AAAA", 60, ["::1"]),
    )
    txt = ask(dns_server, "txt.shop.internal", "TXT").answer[0]
    assert [s.decode() for s in txt[0].strings] == ["cluster=es-primary", "rev=2"]
    assert ask(dns_server, "v6.shop.internal", "AAAA").answer[0][0].address == "::1"

    soa = ask(dns_server, ZONE, "SOA")
    assert soa.flags & dns.flags.AA
    assert soa.answer[0].rdtype == dns.rdatatype.SOA
    assert len(ask(dns_server, ZONE, "NS").answer[0]) >= 1

    cname_only = sections(ask(dns_server, RECORD, "CNAME").answer)
    assert set(cname_only) == {(RECORD + ".", "CNAME")}  # asked for the CNAME: no chasing

    any_answer = sections(ask(dns_server, ZONE, "ANY").answer)
    assert {(ZONE, "SOA"), (ZONE, "NS")} <= set(any_answer)


def test_missing_type_is_nodata_with_the_soa(dns_server: Route53DnsServer, zone_id: str) -> None:
    response = ask(dns_server, PRIMARY_HOST, "AAAA")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []
    assert [r.rdtype for r in response.authority] == [dns.rdatatype.SOA]


def test_unknown_name_is_nxdomain_with_the_zone_soa(
    dns_server: Route53DnsServer, zone_id: str
) -> None:
    response = ask(dns_server, "nope.shop.internal")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA
    (soa,) = response.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.name.to_text() == ZONE
    assert soa.ttl <= soa[0].minimum
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver_for(dns_server).resolve("nope.shop.internal", "A")


def test_cname_to_a_missing_name_in_our_zone_is_nxdomain(
    dns_server: Route53DnsServer, route53: Any, zone_id: str
) -> None:
    upsert(route53, zone_id, rrset(RECORD, "CNAME", 1, ["gone.shop.internal"]))
    response = ask(dns_server, RECORD)
    assert response.rcode() == dns.rcode.NXDOMAIN  # RFC 6604: the rcode of the last name
    assert [r.rdtype for r in response.answer] == [dns.rdatatype.CNAME]


def test_cname_loop_ends(dns_server: Route53DnsServer, route53: Any, zone_id: str) -> None:
    upsert(
        route53,
        zone_id,
        rrset("a.shop.internal", "CNAME", 5, ["b.shop.internal"]),
        rrset("b.shop.internal", "CNAME", 5, ["a.shop.internal"]),
    )
    response = ask(dns_server, "a.shop.internal")
    assert response.rcode() == dns.rcode.NOERROR
    assert len(response.answer) == 2


def test_name_outside_every_zone_is_refused(dns_server: Route53DnsServer, zone_id: str) -> None:
    response = ask(dns_server, "example.com")
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA
    assert response.answer == []


def test_queries_are_counted(dns_server: Route53DnsServer, zone_id: str) -> None:
    before = dns_server.queries
    ask(dns_server, RECORD)
    ask(dns_server, "example.com", tcp=True)
    assert dns_server.queries == before + 2


# --------------------------------------------------------------------------- failures


def test_route53_unreachable_is_servfail_not_a_crash() -> None:
    dead = f"http://127.0.0.1:{free_port()}"

    def factory() -> Any:
        return route53_client(
            dead, retries={"total_max_attempts": 1}, connect_timeout=0.5, read_timeout=0.5
        )

    with Route53DnsServer(factory) as server:
        for tcp in (False, True, False):  # still answering after a failure
            response = ask(server, RECORD, tcp=tcp)
            assert response.rcode() == dns.rcode.SERVFAIL
            assert not response.flags & dns.flags.AA
        assert server.queries == 3


def test_factory_failure_is_servfail() -> None:
    def factory() -> Any:
        raise RuntimeError("no credentials")

    with Route53DnsServer(factory) as server:
        assert ask(server, RECORD).rcode() == dns.rcode.SERVFAIL


def test_start_binds_one_port_for_udp_and_tcp_and_stop_releases_it(moto_endpoint: str) -> None:
    server = Route53DnsServer(lambda: route53_client(moto_endpoint))
    server.start()
    port = server.port
    assert port != 0
    with pytest.raises(RuntimeError, match="already listening"):
        server.start()
    server.stop()
    server.stop()  # idempotent
    again = Route53DnsServer(lambda: route53_client(moto_endpoint), port=port)
    with again:
        assert again.port == port
        assert ask(again, "example.com").rcode() == dns.rcode.REFUSED


def test_wildcards_aliases_and_truncation(
    dns_server: Route53DnsServer, route53: Any, zone_id: str
) -> None:
    hosted_zone = zone_id.rsplit("/", 1)[-1]
    alias_target = {"HostedZoneId": hosted_zone, "DNSName": STANDBY_HOST}
    upsert(
        route53,
        zone_id,
        rrset("*.nodes.shop.internal", "A", 5, ["127.0.3.1"]),
        {
            "Name": "apex-alias.shop.internal",
            "Type": "A",
            "AliasTarget": {**alias_target, "EvaluateTargetHealth": False},
        },
        rrset("big.shop.internal", "TXT", 5, [f'"{i:03d}{"x" * 200}"' for i in range(4)]),
    )
    wildcard = ask(dns_server, "es-3.nodes.shop.internal").answer
    assert [(r.name.to_text(), r[0].address) for r in wildcard] == [
        ("es-3.nodes.shop.internal.", "127.0.3.1")
    ]
    alias = sections(ask(dns_server, "apex-alias.shop.internal").answer)
    alias_a = alias["apex-alias.shop.internal.", "A"]
    assert sorted(r.address for r in alias_a) == STANDBY_IPS
    assert alias_a.ttl == A_TTL  # an alias carries its target's TTL

    udp = ask(dns_server, "big.shop.internal", "TXT")
    assert udp.flags & dns.flags.TC  # over 512 bytes without EDNS: retry over TCP
    assert len(ask(dns_server, "big.shop.internal", "TXT", tcp=True).answer[0]) == 4
    assert len(resolver_for(dns_server).resolve("big.shop.internal", "TXT")) == 4


def test_serves_only_the_zones_it_is_given(route53: Any, zone_id: str, moto_endpoint: str) -> None:
    """Two private zones of one name (two stacks in one moto): each server sees its own."""
    other = route53.create_hosted_zone(Name=ZONE, CallerReference=uuid.uuid4().hex)
    other_id = other["HostedZone"]["Id"]
    upsert(route53, other_id, rrset(RECORD, "CNAME", 1, [STANDBY_HOST]))
    for served, expected in ((zone_id, PRIMARY_HOST), (other_id, STANDBY_HOST)):
        factory = lambda: route53_client(moto_endpoint)  # noqa: E731
        with Route53DnsServer(factory, zone_ids=[served]) as server:
            answer = ask(server, RECORD, "CNAME")
            targets = [rdata.target.to_text() for rrset in answer.answer for rdata in rrset]
            assert targets == [expected + "."]
