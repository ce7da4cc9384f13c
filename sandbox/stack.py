"""The embedded local stack: Temporal dev server, moto, two simulated search clusters, a worker.

Everything listens on loopback and starts in about a second, so the demo and the tests
exercise real processes and real protocols without Docker or an AWS account.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from moto.server import ThreadedMotoServer
from temporalio.client import Client
from temporalio.worker import Worker

from failover.config import AppConfig, AwsSettings, parse_config
from failover.net import free_port
from failover.temporal import EmbeddedTemporalServer, TemporalEndpoint
from sandbox.search_sim import SimulatedCluster, SimulatorFleet

SANDBOX_CLUSTER = "catalog-search"
ZONE_NAME = "shop.internal."
RECORD_NAME = "search.shop.internal."
PRIMARY_VALUE = "es-primary.shop.internal"
STANDBY_VALUE = "es-standby.shop.internal"
PRIMARY_SIM = "es-primary"
STANDBY_SIM = "es-standby"
INFO_FILE = "sandbox.json"
CONFIG_FILE = "config.yaml"

# moto accepts any credentials; these keep boto3 from looking for real ones.
SANDBOX_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "sandbox",
    "AWS_SECRET_ACCESS_KEY": "sandbox",
    "AWS_SESSION_TOKEN": "sandbox",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class SandboxInfo:
    """Where everything listens; written to sandbox.json so the CLI can find it."""

    temporal: TemporalEndpoint
    aws_endpoint: str
    simulator_control_url: str
    config_path: str
    hosted_zone_id: str
    clusters: dict[str, list[str]] = field(default_factory=dict)

    def save(self, directory: Path) -> None:
        data = asdict(self)
        (directory / INFO_FILE).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> SandboxInfo | None:
        try:
            data = json.loads((directory / INFO_FILE).read_text())
        except FileNotFoundError:
            return None
        data["temporal"] = TemporalEndpoint(**data["temporal"])
        return cls(**data)


def sandbox_config(
    *, aws_endpoint: str, zone_id: str, primary_nodes: list[str], standby_nodes: list[str]
) -> dict[str, Any]:
    """The config file a user would write for this stack, with sandbox-fast probe timings."""
    return {
        "aws": {"region": "us-east-1", "endpoint_url": aws_endpoint},
        "task_queue": "search-failover",
        "clusters": [
            {
                "name": SANDBOX_CLUSTER,
                "primary": {"nodes": primary_nodes, "expected_cluster_name": PRIMARY_SIM},
                "standby": {"nodes": standby_nodes, "expected_cluster_name": STANDBY_SIM},
                "probe": {
                    "interval_seconds": 0.5,
                    "timeout_seconds": 1.0,
                    "failure_threshold": 3,
                    "verify_attempts": 3,
                    "yellow_policy": "degraded",
                },
                "switch": {
                    "type": "route53",
                    "hosted_zone_id": zone_id,
                    "record_name": RECORD_NAME,
                    "record_type": "CNAME",
                    "ttl": 60,
                    "primary_value": PRIMARY_VALUE,
                    "standby_value": STANDBY_VALUE,
                    "insync_poll_seconds": 0.5,
                },
            }
        ],
    }


def create_zone_and_record(route53: Any) -> str:
    """A private-looking zone with the search record pointing at the primary; returns the id."""
    zone = route53.create_hosted_zone(Name=ZONE_NAME, CallerReference=f"sandbox-{os.getpid()}")
    zone_id = zone["HostedZone"]["Id"].removeprefix("/hostedzone/")
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": RECORD_NAME,
                        "Type": "CNAME",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": PRIMARY_VALUE}],
                    },
                }
            ]
        },
    )
    return zone_id


class Sandbox:
    """Starts and stops the whole local stack in this process."""

    def __init__(
        self,
        directory: Path,
        *,
        temporal_port: int | None = None,
        ui_port: int | None = None,
        with_worker: bool = True,
    ) -> None:
        self.directory = directory
        self.temporal_port = temporal_port or free_port()
        self.ui_port = ui_port or free_port()
        self.with_worker = with_worker
        self.moto: ThreadedMotoServer | None = None
        self.fleet: SimulatorFleet | None = None
        self.temporal: EmbeddedTemporalServer | None = None
        self.client: Client | None = None
        self.worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self.config: AppConfig | None = None
        self.info: SandboxInfo | None = None

    async def start(self) -> SandboxInfo:
        from worker import aws_client_factory, build_worker

        for key, value in SANDBOX_AWS_ENV.items():
            os.environ.setdefault(key, value)
        self.directory.mkdir(parents=True, exist_ok=True)

        # moto's werkzeug logs every request at INFO; the stack's own output says enough.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        aws_endpoint = f"http://{host}:{port}"

        primary = SimulatedCluster(PRIMARY_SIM)
        standby = SimulatedCluster(STANDBY_SIM, distribution="opensearch")
        self.fleet = SimulatorFleet([primary, standby])
        await self.fleet.start()
        primary_nodes = self.fleet.clusters[PRIMARY_SIM].node_urls
        standby_nodes = self.fleet.clusters[STANDBY_SIM].node_urls

        route53 = aws_client_factory(AwsSettings(endpoint_url=aws_endpoint), "route53")()
        zone_id = await asyncio.to_thread(create_zone_and_record, route53)

        raw = sandbox_config(
            aws_endpoint=aws_endpoint,
            zone_id=zone_id,
            primary_nodes=primary_nodes,
            standby_nodes=standby_nodes,
        )
        self.config = parse_config(raw, source="sandbox")
        config_path = self.directory / CONFIG_FILE
        config_path.write_text(yaml.safe_dump(raw, sort_keys=False))

        self.temporal = EmbeddedTemporalServer(
            self.directory, port=self.temporal_port, ui_port=self.ui_port
        )
        self.client = await self.temporal.start()
        endpoint = self.temporal.endpoint
        if self.with_worker:
            self.worker = build_worker(
                self.client, aws=self.config.aws, task_queue=self.config.task_queue
            )
            self._worker_task = asyncio.create_task(self.worker.run())

        self.info = SandboxInfo(
            temporal=endpoint,
            aws_endpoint=aws_endpoint,
            simulator_control_url=self.fleet.control_url,
            config_path=str(config_path),
            hosted_zone_id=zone_id,
            clusters={PRIMARY_SIM: primary_nodes, STANDBY_SIM: standby_nodes},
        )
        self.info.save(self.directory)
        return self.info

    def read_record_values(self) -> list[str]:
        """The search record's values, read straight from moto (not through the workflow)."""
        from worker import aws_client_factory

        assert self.config is not None and self.info is not None
        route53 = aws_client_factory(self.config.aws, "route53")()
        answer = route53.list_resource_record_sets(
            HostedZoneId=self.info.hosted_zone_id,
            StartRecordName=RECORD_NAME,
            StartRecordType="CNAME",
            MaxItems="1",
        )
        return [
            r["Value"]
            for record in answer["ResourceRecordSets"]
            if record["Name"] == RECORD_NAME and record["Type"] == "CNAME"
            for r in record["ResourceRecords"]
        ]

    async def stop(self) -> None:
        if self.worker is not None and self._worker_task is not None:
            await self.worker.shutdown()
            await self._worker_task
        if self.temporal is not None:
            self.temporal.stop()
        if self.fleet is not None:
            await self.fleet.stop()
        if self.moto is not None:
            self.moto.stop()
        (self.directory / INFO_FILE).unlink(missing_ok=True)
        TemporalEndpoint.forget(self.directory)
