"""Where a running sandbox listens, as saved in its sandbox.json: light to import, so
`failover sandbox fault` and the other commands that only read it start fast."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from failover.client.temporal import TemporalEndpoint

INFO_FILE = "sandbox.json"
Mode = Literal["dns", "nlb"]

# moto accepts any credentials; these keep boto3 from looking for real ones.
SANDBOX_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "sandbox",
    "AWS_SECRET_ACCESS_KEY": "sandbox",
    "AWS_SESSION_TOKEN": "sandbox",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class RegionInfo:
    """Where one Region's parts are."""

    region: str
    role: str
    alb_name: str
    alb_url: str
    load_balancer_arn: str
    target_group_arn: str
    auto_scaling_group: str
    db_cluster_arn: str
    cache_replication_group: str
    varnish_url: str
    storefront_url: str
    redis_url: str
    search_cluster: str
    search_side: str


@dataclass
class SandboxInfo:
    """Where everything listens; written to sandbox.json so the CLI can find it."""

    mode: Mode
    temporal: TemporalEndpoint
    aws_endpoint: str
    aws_proxy_url: str
    simulator_control_url: str
    config_path: str
    hosted_zone_id: str
    storefront_url: str
    dns_server: str
    search_url: str
    clusters: dict[str, list[str]] = field(default_factory=dict)
    # The two-Region storefront (Sandbox(regions=True)); empty otherwise.
    www_url: str = ""
    regions: list[RegionInfo] = field(default_factory=list)
    global_cluster_id: str = ""
    global_datastore_id: str = ""

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
        data["regions"] = [RegionInfo(**region) for region in data.get("regions", [])]
        return cls(**data)
