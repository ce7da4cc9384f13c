"""The deploy files against the code: the compose stack validates, the compose config matches
its services, and the IAM policy grants exactly the AWS calls the activities make.

These files are not run by any other test, so nothing else notices when they drift from the
code: a new boto3 call without its IAM action fails in production with AccessDenied.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.session
import pytest
import yaml
from botocore import xform_name

from failover.config import (
    AppConfig,
    RedisCache,
    Route53Switch,
    SsmCache,
    VarnishCache,
    load_config,
)

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
CONFIG_FILE = ROOT / "deploy" / "config.compose.yaml"
POLICY_FILE = ROOT / "deploy" / "iam-policy.json"
CONFIG_IN_CONTAINER = "/app/deploy/config.compose.yaml"

# What `docker-compose config` refuses to render without (`${VAR:?…}`); dummy values.
REQUIRED_ENV = {"TEMPORAL_DB_PASSWORD": "dummy-db-password"}
BASE_SERVICES = {
    "postgresql",
    "temporal-schema",
    "temporal",
    "temporal-namespace",
    "temporal-ui",
    "search-primary",
    "search-standby",
    "redis",
    "varnish",
    "worker",
    "receiver",
}
PROFILED_SERVICES = {"moto": "aws-standin"}
# Needed only when a cluster side uses `auth: {type: sigv4}`; its own statement in the policy.
# SigV4 requests to Amazon OpenSearch Service: probes and reads (GET), and promotion and
# re-seeding (POST, PUT, DELETE) where replication is configured.
OPTIONAL_ACTIONS = {"es:ESHttpGet", "es:ESHttpPost", "es:ESHttpPut", "es:ESHttpDelete"}
# Actions IAM cannot scope to a resource: the only ones allowed on "*".
NO_RESOURCE_LEVEL_ACTIONS = {
    "elasticloadbalancing:DescribeTargetHealth",
    "elasticloadbalancing:DescribeTargetGroupAttributes",
    "elasticloadbalancing:DescribeLoadBalancers",
    "ec2:DescribeInstances",
    "ssm:GetCommandInvocation",
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeScalingActivities",
    "cloudwatch:GetMetricData",
}
ZONE_ARN = "arn:aws:route53:::hostedzone/Z0123456789ABCDEFGHIJ"
# The Region switch's example storefront: primary in eu-west-1, DR in eu-central-1.
REGIONS = ("eu-west-1", "eu-central-1")
GLOBAL_CLUSTER_ARN = "arn:aws:rds::123456789012:global-cluster:magento-global"
DATASTORE_ARN = "arn:aws:elasticache::123456789012:globalreplicationgroup:ldgnf-magento-cache"
# IAM's prefix where it is not the SigV4 signing name.
IAM_PREFIX = {"monitoring": "cloudwatch"}
SECRETS_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:search-failover/*"
# Base-package modules that build boto3 clients themselves (failover/ cannot take a factory
# from activities/): the activities and the receiver read Secrets Manager through
# failover/secrets.py, the worker's payload codec its keys through failover/codec.py.
OWN_CLIENT_MODULES = ("failover/secrets.py", "failover/codec.py")
# Runs as the Lambda forwarder, under its own role: not the worker's policy.
OTHER_ROLE_MODULES = ("failover/alarms/lambda_forwarder.py",)


# --- docker-compose ------------------------------------------------------------------------


def _docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail(
            "docker-compose is not on PATH: install the Debian package docker-compose "
            "(`make system-packages` does); CI runs this test, so it fails rather than skips"
        )
    return found


def _run_compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A clean environment: variables of the caller's shell would change the rendered file.
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return subprocess.run(
        [_docker_compose(), "-f", str(COMPOSE_FILE), *args, "config"],
        cwd=ROOT,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@cache
def _rendered(profile: str | None) -> dict[str, Any]:
    args = ("--profile", profile) if profile else ()
    proc = _run_compose(*args, env=REQUIRED_ENV)
    assert proc.returncode == 0, f"docker-compose config {' '.join(args)}:\n{proc.stderr}"
    return yaml.safe_load(proc.stdout)


def _services(profile: str | None = None) -> dict[str, dict[str, Any]]:
    """The services `up` would start: docker-compose 1.29 prints profiled ones regardless."""
    services = _rendered(profile)["services"]
    return {
        name: spec
        for name, spec in services.items()
        if not spec.get("profiles") or profile in spec["profiles"]
    }


@pytest.mark.parametrize("profile", [None, "aws-standin"])
def test_compose_file_validates(profile: str | None) -> None:
    services = _services(profile)
    expected = BASE_SERVICES | {s for s, p in PROFILED_SERVICES.items() if p == profile}
    assert set(services) == expected
    for name, wanted in PROFILED_SERVICES.items():
        assert _rendered(profile)["services"][name]["profiles"] == [wanted]


def test_compose_refuses_to_render_without_the_db_password() -> None:
    proc = _run_compose(env={})
    assert proc.returncode != 0
    assert "TEMPORAL_DB_PASSWORD" in proc.stderr


def test_compose_services_wait_for_what_they_need() -> None:
    services = _services("aws-standin")
    healthy = {
        "postgresql",
        "temporal",
        "search-primary",
        "search-standby",
        "redis",
        "varnish",
        "moto",
    }
    for name in healthy:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for side in ("search-primary", "search-standby"):
        spec = services[side]
        assert spec["image"].startswith("opensearchproject/opensearch:")
        assert spec["environment"]["discovery.type"] == "single-node"
        assert spec["environment"]["DISABLE_SECURITY_PLUGIN"] == "true"
        assert spec["environment"]["cluster.name"] == side
        assert any("/_cluster/health" in part for part in spec["healthcheck"]["test"])
    assert services["temporal"]["image"].startswith("temporalio/server:")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    assert services["moto"]["image"].startswith("motoserver/moto:")
    assert services["varnish"]["image"].startswith("varnish:")
    assert f"{ROOT / 'sandbox' / 'magento.vcl'}:" in " ".join(services["varnish"]["volumes"])
    assert all(v.endswith(":ro") for v in services["varnish"]["volumes"])

    for app in ("worker", "receiver"):
        spec = services[app]
        assert spec["image"] == "python:3.11-slim"
        assert spec["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
        assert spec["depends_on"]["temporal-namespace"] == {
            "condition": "service_completed_successfully"
        }
        assert f"{ROOT}:/app:ro" in spec["volumes"]
    assert services["worker"]["command"] == ["python", "worker.py", "--config", CONFIG_IN_CONTAINER]
    assert services["receiver"]["command"] == [
        "failover",
        "receiver",
        "--config",
        CONFIG_IN_CONTAINER,
    ]
    for dependency in ("search-primary", "search-standby", "redis", "varnish"):
        assert services["worker"]["depends_on"][dependency] == {"condition": "service_healthy"}
    assert services["temporal"]["depends_on"]["temporal-schema"] == {
        "condition": "service_completed_successfully"
    }


SECRETISH = re.compile(r"PASSWORD|PASSWD|PWD|SECRET|TOKEN|ACCESS_KEY", re.IGNORECASE)
# ${VAR}, ${VAR:-} (empty default) or ${VAR:?message}: never a value written in the file.
FROM_ENVIRONMENT = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-|:\?[^}]*)?\}$")


def test_compose_takes_secrets_from_the_environment_only() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())  # before interpolation
    seen = []
    for name, spec in raw["services"].items():
        environment = spec.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: write environment as a mapping"
        for key, value in environment.items():
            if SECRETISH.search(key):
                seen.append(key)
                assert FROM_ENVIRONMENT.match(str(value)), f"{name}.{key} is set in the file"
    assert "FAILOVER_ALERTMANAGER_TOKEN" in seen


# --- deploy/config.compose.yaml ------------------------------------------------------------


def _exposes(services: dict[str, dict[str, Any]], host: str | None, port: int | None) -> None:
    assert host in services, f"{host} is not a compose service"
    assert str(port) in services[host].get("expose", []), f"{host} does not expose {port}"


def test_compose_config_validates_and_names_compose_services() -> None:
    config: AppConfig = load_config(CONFIG_FILE)
    services = _services("aws-standin")

    assert config.aws.endpoint_url is not None
    endpoint = urlsplit(str(config.aws.endpoint_url))
    _exposes(services, endpoint.hostname, endpoint.port)
    assert endpoint.hostname in PROFILED_SERVICES

    for cluster in config.clusters:
        for side in (cluster.primary, cluster.standby):
            for node in side.nodes:
                _exposes(services, node.host, node.port)
                environment = services[str(node.host)]["environment"]
                assert side.expected_cluster_name == environment["cluster.name"]
        assert isinstance(cluster.switch, Route53Switch)
        assert re.fullmatch(r"Z[0-9A-Z]+", cluster.switch.zone_id)
        for flush in cluster.caches:
            if isinstance(flush, RedisCache):
                _exposes(services, flush.host, flush.port)
            elif isinstance(flush, VarnishCache):
                for server in flush.servers:
                    _exposes(services, server.host, server.port)
            else:
                assert isinstance(flush, SsmCache)

    receiver = config.receiver
    assert receiver is not None and receiver.alertmanager is not None
    assert receiver.host == "0.0.0.0"
    _exposes(services, "receiver", receiver.port)
    assert receiver.alertmanager.bearer_token_env in services["receiver"]["environment"]

    temporal_host, temporal_port = services["worker"]["environment"]["TEMPORAL_ADDRESS"].split(":")
    _exposes(services, temporal_host, int(temporal_port))


# --- deploy/iam-policy.json against the boto3 calls -----------------------------------------


@dataclass(frozen=True)
class AwsCall:
    service: str  # boto3 client name, e.g. "elbv2"
    operation: str  # API operation, e.g. "DescribeTargetHealth"
    where: str  # "activities/nlb.py:31"


@dataclass
class CallScan:
    calls: list[AwsCall] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)


def factory_services(worker_source: str) -> dict[tuple[str, int | str], str]:
    """(activity class, constructor argument) → boto3 service, from the client factories the
    worker hands each activity class: `Route53Activities(aws_client_factory(aws, "route53"))`."""
    found: dict[tuple[str, int | str], str] = {}
    for node in ast.walk(ast.parse(worker_source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        for index, arg in enumerate(node.args):
            if service := _factory_service(arg):
                found[(node.func.id, index)] = service
        for keyword in node.keywords:
            if keyword.arg and (service := _factory_service(keyword.value)):
                found[(node.func.id, keyword.arg)] = service
    return found


def _factory_service(node: ast.expr) -> str | None:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "aws_client_factory"
        and len(node.args) == 2
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
    ):
        return node.args[1].value
    return None


def _init_params(cls: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> list[str]:
    """The parameters of the class's __init__ (own or inherited) after self, in order."""
    for item in cls.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            args = item.args
            return [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]][1:]
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id in classes:
            return _init_params(classes[base.id], classes)
    return []


def _is_caller(cls: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> bool:
    for base in cls.bases:
        if isinstance(base, ast.Name) and (
            base.id == "AwsCaller" or (base.id in classes and _is_caller(classes[base.id], classes))
        ):
            return True
    return False


def _is_self_attr(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


def scan_aws_calls(activity_sources: dict[str, str], worker_source: str) -> CallScan:
    """Every call the activities make on a boto3 client, with its service.

    Clients reach activities only as factories (activities.aws.aws_client_factory, handed out
    by the worker) wrapped in
    activities.aws.AwsCaller: a subclass calls `self.call("Operation")`, a holder of one
    `self.<attr>.call(...)`; `.client.<method>()`, paginators and waiters count as well.
    Whatever this cannot attribute to a service is reported as unresolved.
    """
    factories = factory_services(worker_source)
    trees = {path: ast.parse(source) for path, source in activity_sources.items()}
    classes = {
        node.name: node
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }
    scan = CallScan()
    for path, tree in trees.items():
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            if cls.name != "AwsCaller":  # its `call` is the dispatcher, not a call site
                _scan_class(path, cls, classes, factories, scan)
    return scan


def _scan_class(
    path: str,
    cls: ast.ClassDef,
    classes: dict[str, ast.ClassDef],
    factories: dict[tuple[str, int | str], str],
    scan: CallScan,
) -> None:
    params = _init_params(cls, classes)

    def service_of(param: str) -> str | None:
        by_name = factories.get((cls.name, param))
        if by_name is None and param in params:
            return factories.get((cls.name, params.index(param)))
        return by_name

    def where(node: ast.AST) -> str:
        return f"{path}:{getattr(node, 'lineno', '?')}"

    own: str | None = None
    if _is_caller(cls, classes):
        inherited = _init_params(classes["AwsCaller"], classes) if "AwsCaller" in classes else []
        own = service_of(inherited[0]) if inherited else None
        if own is None:
            scan.unresolved.append(f"{where(cls)}: no client factory for {cls.name}")
    held: dict[str, str | None] = {}  # self.<attr> = AwsCaller(<factory parameter>)
    for node in ast.walk(cls):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target, value = node.targets[0], node.value
        if (
            _is_self_attr(target)
            and isinstance(target, ast.Attribute)
            and isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id == "AwsCaller"
        ):
            arg = value.args[0] if value.args else None
            service = service_of(arg.id) if isinstance(arg, ast.Name) else None
            held[target.attr] = service
            if service is None:
                scan.unresolved.append(f"{where(node)}: no client factory for this AwsCaller")

    def caller_service(node: ast.expr) -> str | None:
        if isinstance(node, ast.Name) and node.id == "self":
            return own
        if _is_self_attr(node) and isinstance(node, ast.Attribute):
            return held.get(node.attr)
        return None

    # A method named call_in is a dispatcher (it forwards its arguments), not a call site.
    dispatch = {
        id(inner)
        for function in ast.walk(cls)
        if isinstance(function, ast.AsyncFunctionDef | ast.FunctionDef)
        and function.name == "call_in"
        for inner in ast.walk(function)
    }
    for node in ast.walk(cls):
        if not isinstance(node, ast.Call) or id(node) in dispatch:
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr == "call_in":
            _regional_call(node, where(node), scan)
            continue
        if isinstance(node.func, ast.Name) and node.func.id == "getattr" and node.args:
            target = node.args[0]
            if isinstance(target, ast.Attribute) and target.attr == "client":
                scan.unresolved.append(f"{where(node)}: client method chosen at run time")
            continue
        if not isinstance(node.func, ast.Attribute):
            continue
        method, receiver = node.func.attr, node.func.value
        first = node.args[0] if node.args else None
        literal = first.value if isinstance(first, ast.Constant) else None
        if method == "call" and (service := caller_service(receiver)):
            if isinstance(literal, str):
                scan.calls.append(AwsCall(service, literal, where(node)))
            else:
                scan.unresolved.append(f"{where(node)}: operation name is not a literal")
        elif method == "call" and isinstance(literal, str) and literal[:1].isupper():
            scan.unresolved.append(f"{where(node)}: {literal} on a receiver of unknown service")
        elif (
            isinstance(receiver, ast.Attribute)
            and receiver.attr == "client"
            and (service := caller_service(receiver.value))
        ):
            operation = _client_method_operation(service, method, literal)
            if operation is None:
                scan.unresolved.append(f"{where(node)}: {service}.{method}")
            else:
                scan.calls.append(AwsCall(service, operation, where(node)))


def _regional_call(node: ast.Call, where: str, scan: CallScan) -> None:
    """`<x>.call_in("<service>", <region>, "<Operation>", ...)`: a call that names its Region
    (activities.region.RegionalAws), the service and operation written as literals."""
    literals = [a.value if isinstance(a, ast.Constant) else None for a in node.args[:3]]
    if len(literals) == 3 and isinstance(literals[0], str) and isinstance(literals[2], str):
        scan.calls.append(AwsCall(literals[0], literals[2], where))
    else:
        scan.unresolved.append(f"{where}: call_in without a literal service and operation")


@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


def _operations(service: str) -> dict[str, str]:
    """snake_case client method → API operation name."""
    model = _session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


def _client_method_operation(service: str, method: str, literal: object) -> str | None:
    """The API call behind a client method; a paginator or waiter counts as its operation."""
    if method == "get_paginator" and isinstance(literal, str):
        return _operations(service).get(literal)
    if method == "get_waiter" and isinstance(literal, str):
        waiters = _session().get_waiter_model(service)
        names = {xform_name(name): name for name in waiters.waiter_names}
        return waiters.get_waiter(names[literal]).operation if literal in names else None
    return _operations(service).get(method)


def iam_action(call: AwsCall) -> str:
    """IAM's prefix is the service's SigV4 signing name (elbv2 → elasticloadbalancing), but
    CloudWatch signs as monitoring and is cloudwatch in IAM."""
    model = _session().get_service_model(call.service)
    assert call.operation in model.operation_names, f"{call.where}: no {call}"
    return f"{IAM_PREFIX.get(model.signing_name, model.signing_name)}:{call.operation}"


def scan_own_client_calls(path: str, source: str) -> CallScan:
    """The calls of a module that builds its clients itself: `<x>.client("<service>", ...)`
    names the service (a literal), and a method call named as one of that service's
    operations (or its paginators and waiters) is a call of it."""
    tree = ast.parse(source)
    scan = CallScan()
    services: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "client"
        ):
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                services.add(first.value)
            elif isinstance(first, ast.Name) and isinstance(
                constant := _module_constant(tree, first.id), str
            ):
                services.add(constant)
            else:
                scan.unresolved.append(f"{path}:{node.lineno}: client of a service not literal")
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        first = node.args[0] if node.args else None
        literal = first.value if isinstance(first, ast.Constant) else None
        for service in sorted(services):
            operation = _client_method_operation(service, node.func.attr, literal)
            if operation is not None:
                scan.calls.append(AwsCall(service, operation, f"{path}:{node.lineno}"))
    return scan


def _module_constant(tree: ast.Module, name: str) -> object:
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and [t.id for t in node.targets if isinstance(t, ast.Name)] == [name]
            and isinstance(node.value, ast.Constant)
        ):
            return node.value.value
    return None


def _all_aws_calls() -> CallScan:
    """The activities' calls, and those of the base-package modules with their own clients."""
    scan = scan_aws_calls(_activity_sources(), (ROOT / "worker.py").read_text())
    for path in OWN_CLIENT_MODULES:
        own = scan_own_client_calls(path, (ROOT / path).read_text())
        scan.calls += own.calls
        scan.unresolved += own.unresolved
    return scan


def _activity_sources() -> dict[str, str]:
    return {
        str(path.relative_to(ROOT)): path.read_text()
        for path in sorted((ROOT / "activities").glob("*.py"))
    }


def _statements() -> list[dict[str, Any]]:
    policy = json.loads(POLICY_FILE.read_text())
    assert policy["Version"] == "2012-10-17"
    return policy["Statement"]


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_activities_get_boto3_clients_only_from_the_factory() -> None:
    """Otherwise the scan below could not tell which service a call goes to: only
    activities/aws.py (aws_client_factory) makes clients; the worker hands them out."""
    for path, source in _activity_sources().items():
        if path == "activities/aws.py":
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(m.split(".")[0] == "boto3" for m in modules), (
                    f"{path}:{node.lineno} imports boto3; take a client factory from the worker"
                )


def test_only_the_listed_base_modules_use_boto3() -> None:
    """A new boto3 user in failover/ must join OWN_CLIENT_MODULES, or the policy test below
    would not see its calls."""
    users = set()
    for path in sorted((ROOT / "failover").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(m.split(".")[0] == "boto3" for m in modules):
                    users.add(str(path.relative_to(ROOT)))
    assert users == set(OWN_CLIENT_MODULES) | set(OTHER_ROLE_MODULES)


def test_the_own_client_scan_finds_secret_reads() -> None:
    scan = scan_own_client_calls("failover/secrets.py", (ROOT / "failover/secrets.py").read_text())
    assert not scan.unresolved
    assert {iam_action(c) for c in scan.calls} == {"secretsmanager:GetSecretValue"}
    fake = (
        'SERVICE = "secretsmanager"\n'
        "def read(session, name, service):\n"
        "    client = session.client(SERVICE)\n"
        "    client.describe_secret(SecretId=name)\n"
        "    session.client(service)\n"
    )
    scan = scan_own_client_calls("fake.py", fake)
    assert [(iam_action(c), c.where) for c in scan.calls] == [
        ("secretsmanager:DescribeSecret", "fake.py:4")
    ]
    assert scan.unresolved == ["fake.py:5: client of a service not literal"]


def test_iam_policy_grants_exactly_the_boto3_calls() -> None:
    scan = _all_aws_calls()
    assert not scan.unresolved, "cannot map these AWS calls to a service:\n" + "\n".join(
        scan.unresolved
    )
    needed: dict[str, list[str]] = {}
    for call in scan.calls:
        needed.setdefault(iam_action(call), []).append(call.where)
    granted = {
        action
        for statement in _statements()
        for action in _listed(statement["Action"])
        if action not in OPTIONAL_ACTIONS
    }
    missing = sorted(set(needed) - granted)
    extra = sorted(granted - set(needed))
    assert not missing and not extra, (
        "deploy/iam-policy.json does not match the boto3 calls in activities/ and "
        f"{', '.join(OWN_CLIENT_MODULES)}:\n"
        + "".join(f"  missing {a} (called at {', '.join(needed[a])})\n" for a in missing)
        + "".join(f"  extra {a} (no call needs it)\n" for a in extra)
    )


def test_iam_policy_is_scoped_where_iam_allows() -> None:
    statements = _statements()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert re.fullmatch(r"[A-Za-z0-9]+", statement["Sid"])
        actions = set(_listed(statement["Action"]))
        if "*" in _listed(statement["Resource"]):
            assert actions <= NO_RESOURCE_LEVEL_ACTIONS, f"{statement['Sid']}: scope {actions}"
        if actions & OPTIONAL_ACTIONS:
            assert actions <= OPTIONAL_ACTIONS, "es:ESHttp* belong in statements of their own"
            assert all(":domain/" in r for r in _listed(statement["Resource"]))

    def resources(action: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (resource, statement.get("Condition", {}))
            for statement in statements
            if action in _listed(statement["Action"])
            for resource in _listed(statement["Resource"])
        ]

    assert resources("route53:ListResourceRecordSets") == [(ZONE_ARN, {})]
    [(zone, condition)] = resources("route53:ChangeResourceRecordSets")
    assert zone == ZONE_ARN
    assert condition["ForAllValues:StringEquals"]["route53:ChangeResourceRecordSetsActions"] == [
        "UPSERT"
    ]
    assert resources("route53:GetChange") == [("arn:aws:route53:::change/*", {})]
    for action in ("RegisterTargets", "DeregisterTargets"):
        [(arn, _)] = resources(f"elasticloadbalancing:{action}")
        assert ":targetgroup/" in arn
    send = dict(resources("ssm:SendCommand"))
    # Both Regions: a Region switch flushes the app servers' caches in the Region it moved to.
    documents = {f"arn:aws:ssm:{r}::document/AWS-RunShellScript" for r in REGIONS}
    instances = {f"arn:aws:ec2:{r}:123456789012:instance/*" for r in REGIONS}
    assert set(send) == documents | instances
    assert all(send[d] == {} for d in documents)
    assert all(
        send[i] == {"StringEquals": {"ssm:resourceTag/Role": "magento-app"}} for i in instances
    )
    assert resources("autoscaling:UpdateAutoScalingGroup") == [
        (
            f"arn:aws:autoscaling:{r}:123456789012:autoScalingGroup:*:autoScalingGroupName/magento-web",
            {},
        )
        for r in REGIONS
    ]
    assert resources("rds:DescribeGlobalClusters") == [(GLOBAL_CLUSTER_ARN, {})]
    members = [f"arn:aws:rds:{r}:123456789012:cluster:magento-{r}" for r in REGIONS]
    for action in ("rds:SwitchoverGlobalCluster", "rds:FailoverGlobalCluster"):
        # The global cluster and its two members only: never another database's writer.
        assert resources(action) == [(GLOBAL_CLUSTER_ARN, {}), *((m, {}) for m in members)]
    for action in ("DescribeGlobalReplicationGroups", "FailoverGlobalReplicationGroup"):
        assert resources(f"elasticache:{action}") == [(DATASTORE_ARN, {})]
    assert resources("es:ESHttpGet"), "the optional SigV4 statement is documented in the policy"
    # The failover's own secrets only, never every secret in the account.
    assert resources("secretsmanager:GetSecretValue") == [(SECRETS_ARN, {})]
    for method in ("Post", "Put", "Delete"):
        assert all(":domain/" in r for r, _ in resources(f"es:ESHttp{method}")), method


def test_the_scan_sees_every_way_of_calling_a_client() -> None:
    """Paginators, waiters, direct client methods and held callers; aliases are reported."""
    worker = (
        'a = Records(aws_client_factory(aws, "route53"))\n'
        'b = Holder(elb_factory=aws_client_factory(aws, "elbv2"))\n'
        "c = Regional(region_clients(aws))\n"
    )
    activities = {
        "activities/aws.py": (ROOT / "activities" / "aws.py").read_text(),
        "activities/fake.py": (
            "class Records(AwsCaller):\n"
            "    async def read(self):\n"
            '        await self.call("GetChange", Id="x")\n'
            '        self.client.get_paginator("list_resource_record_sets")\n'
            '        self.client.get_waiter("resource_record_sets_changed")\n'
            "class Holder:\n"
            "    def __init__(self, *, elb_factory):\n"
            "        self.elb = AwsCaller(elb_factory)\n"
            "    async def move(self):\n"
            '        await self.elb.call("RegisterTargets", Targets=[])\n'
            "        self.elb.client.describe_target_group_attributes()\n"
            "        alias = self.elb\n"
            '        await alias.call("DeregisterTargets")\n'
            "class Regional:\n"
            "    async def call_in(self, service, region, operation):\n"
            "        await self.aws.call_in(service, region, operation)\n"
            "    async def read(self, region):\n"
            '        await self.aws.call_in("rds", region, "DescribeGlobalClusters")\n'
            '        await self.call_in("cloudwatch", region, "GetMetricData")\n'
            "        service = 'rds'\n"
            '        await self.aws.call_in(service, region, "SwitchoverGlobalCluster")\n'
        ),
    }
    scan = scan_aws_calls(activities, worker)
    assert {iam_action(c) for c in scan.calls} == {
        "route53:GetChange",
        "route53:ListResourceRecordSets",
        "elasticloadbalancing:RegisterTargets",
        "elasticloadbalancing:DescribeTargetGroupAttributes",
        "rds:DescribeGlobalClusters",
        "cloudwatch:GetMetricData",
    }
    assert sorted(c.where for c in scan.calls if c.operation == "GetChange") == [
        "activities/fake.py:3",
        "activities/fake.py:5",
    ]
    assert scan.unresolved == [
        "activities/fake.py:13: DeregisterTargets on a receiver of unknown service",
        "activities/fake.py:21: call_in without a literal service and operation",
    ]
