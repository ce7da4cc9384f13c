"""deploy/cloudformation/failover.yaml: it lints clean, it creates in moto's CloudFormation,
and what it creates is what the worker and the alarm receiver expect.

moto 5.2's CloudFormation creates the IAM roles and instance profile, the SNS topic and the
EventBridge rule itself. It has no handler for AWS::CloudWatch::Alarm,
AWS::SNS::Subscription, AWS::Events::Connection or AWS::Events::ApiDestination: it skips
them, and the stack could not even resolve `!GetAtt ReceiverApiDestination.Arn`. For those
four types the `stacks` fixture plugs in thin handlers (API_HANDLERS) that pass the
properties, as CloudFormation resolved them, to the service's own API through boto3
(botocore refuses an unknown or mistyped parameter), and give back the Ref value and
attributes the API returned. The stack tests then read every resource back through the
service APIs, never from the template. What moto does not do at all: evaluate the
template's `Rules` (the assertion that EventBridge delivery has a secret), confirm the HTTPS
subscription, or deliver an event to the API destination; the receiver's tests cover
delivery.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws
from moto.cloudformation import parsing
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.events.models import EventPattern

from failover.alarms.payloads import from_eventbridge
from failover.alarms.receiver import CONTENT_TYPES
from failover.config import EventBridgeSettings, SnsSettings

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "cloudformation" / "failover.yaml"
POLICY_FILE = ROOT / "deploy" / "iam-policy.json"
CFN_LINT = Path(sys.executable).with_name("cfn-lint")

# The Region and account the placeholders of deploy/iam-policy.json name (moto's default
# account is the same 123456789012).
REGION = "eu-west-1"
ACCOUNT = "123456789012"
# Every other placeholder of deploy/iam-policy.json, as the parameter that replaces it.
POLICY_PLACEHOLDERS = {
    "HostedZoneId": "Z0123456789ABCDEFGHIJ",
    "RecordName": "search.shop.internal",
    "RecordType": "CNAME",
    "SearchTargetGroupArn": (
        "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/search/0123456789abcdef"
    ),
    "SsmDocumentName": "AWS-RunShellScript",
    "AppInstanceTagValue": "magento-app",
    "DrRegion": "eu-central-1",
    "PrimaryAutoScalingGroupName": "magento-web",
    "DrAutoScalingGroupName": "magento-web",
    "GlobalClusterId": "magento-global",
    "PrimaryDbClusterId": "magento-eu-west-1",
    "DrDbClusterId": "magento-eu-central-1",
    "GlobalReplicationGroupId": "ldgnf-magento-cache",
    "PrimaryDomainName": "search-catalog-a",
    "StandbyDomainName": "search-catalog-b",
    "NotificationTopicName": "search-failover-notifications",
    "SecretNamePrefix": "search-failover/",
}
RECEIVER_URL = "https://failover.example.com"
EVENTBRIDGE_SECRET = "s3cr3t-token-of-the-receiver-0123456789"
ALARM_NAMES = {
    "RedAlarmName": "catalog-search-red",
    "YellowAlarmName": "catalog-search-yellow",
    "ServerErrorAlarmName": "catalog-search-5xx",
}
NAMES = {
    "WorkerRoleName": "search-failover-worker",
    "EventBridgeRoleName": "search-failover-eventbridge",
    "AlarmTopicName": "search-alarms",
    "EventBridgeConnectionName": "failover-receiver",
    "ApiDestinationName": "failover-receiver",
    "AlarmRuleName": "search-alarms",
    **ALARM_NAMES,
}
DELIVERY_PARAMETERS = {
    "ReceiverUrl": RECEIVER_URL,
    "EventBridgeSecret": EVENTBRIDGE_SECRET,
    "ServerErrorThreshold": "25",
    "ServerErrorEvaluationPeriods": "4",
    "ApiDestinationRateLimit": "5",
}
# Where W1030 (ignored in the template's metadata) may report: the secret's empty default.
W1030_EXPECTED_PATHS = (
    ["Parameters", "EventBridgeSecret"],
    ["Resources", "ReceiverConnection", "Properties", "AuthParameters"],
)


def run_cfn_lint(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFN_LINT), *arguments, str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_template_lints_clean() -> None:
    """No error or warning, with the one ignored rule forced back on: W1030 (ignored in the
    template's metadata) may find the secret's empty default and nothing else. One run
    covers both: without the forcing, exactly these findings would be hidden."""
    linted = run_cfn_lint("--mandatory-checks", "W1030", "--format", "json")
    assert linted.stderr == ""
    findings = json.loads(linted.stdout)
    assert findings, "W1030 found nothing: drop the ignore from the template's metadata"
    unexpected = [
        (f["Rule"]["Id"], f["Location"]["Path"], f["Message"])
        for f in findings
        if f["Rule"]["Id"] != "W1030"
        or not any(f["Location"]["Path"][: len(p)] == p for p in W1030_EXPECTED_PATHS)
    ]
    assert unexpected == []


# --- Handlers for the resource types moto's CloudFormation lacks -----------------------


class CreatedThroughApi:
    """A resource made by one API call: its Ref value and the attributes GetAtt can read."""

    def __init__(self, physical_resource_id: str, attributes: dict[str, str]) -> None:
        self.physical_resource_id = physical_resource_id
        self.attributes = attributes

    def get_cfn_attribute(self, name: str) -> str:
        if name not in self.attributes:
            raise UnformattedGetAttTemplateException()
        return self.attributes[name]

    def is_created(self) -> bool:
        return True


Made = tuple[str, dict[str, str]]

# AWS::SNS::Subscription properties that the Subscribe API takes as attributes.
SUBSCRIPTION_ATTRIBUTES = ("DeliveryPolicy", "FilterPolicy", "RawMessageDelivery", "RedrivePolicy")


def create_alarm(properties: dict[str, Any], region: str) -> Made:
    cloudwatch = boto3.client("cloudwatch", region_name=region)
    cloudwatch.put_metric_alarm(**properties)
    (alarm,) = cloudwatch.describe_alarms(AlarmNames=[properties["AlarmName"]])["MetricAlarms"]
    return properties["AlarmName"], {"Arn": alarm["AlarmArn"]}


def create_subscription(properties: dict[str, Any], region: str) -> Made:
    direct = {k: v for k, v in properties.items() if k not in SUBSCRIPTION_ATTRIBUTES}
    attributes = {
        key: json.dumps(value) if isinstance(value, dict) else str(value).lower()
        for key, value in properties.items()
        if key in SUBSCRIPTION_ATTRIBUTES
    }
    sns = boto3.client("sns", region_name=region)
    made = sns.subscribe(**direct, Attributes=attributes, ReturnSubscriptionArn=True)
    return made["SubscriptionArn"], {"Arn": made["SubscriptionArn"]}


def create_connection(properties: dict[str, Any], region: str) -> Made:
    events = boto3.client("events", region_name=region)
    made = events.create_connection(**properties)
    secret = events.describe_connection(Name=properties["Name"]).get("SecretArn", "")
    return properties["Name"], {"Arn": made["ConnectionArn"], "SecretArn": secret}


def create_api_destination(properties: dict[str, Any], region: str) -> Made:
    events = boto3.client("events", region_name=region)
    made = events.create_api_destination(**properties)
    return properties["Name"], {"Arn": made["ApiDestinationArn"]}


def api_handler(create: Callable[[dict[str, Any], str], Made], *attributes: str) -> type:
    """A moto resource class whose creation is `create`, with the resolved properties."""

    class Handler:
        @classmethod
        def has_cfn_attr(cls, attribute: str) -> bool:
            return attribute in attributes

        @classmethod
        def create_from_cloudformation_json(
            cls,
            resource_name: str,
            cloudformation_json: dict[str, Any],
            account_id: str,
            region_name: str,
            **kwargs: Any,
        ) -> CreatedThroughApi:
            return CreatedThroughApi(*create(cloudformation_json["Properties"], region_name))

    return Handler


# The attributes are the ones CloudFormation documents for each type's GetAtt.
API_HANDLERS = {
    "AWS::CloudWatch::Alarm": api_handler(create_alarm, "Arn"),
    "AWS::SNS::Subscription": api_handler(create_subscription, "Arn"),
    "AWS::Events::Connection": api_handler(create_connection, "Arn", "SecretArn"),
    "AWS::Events::ApiDestination": api_handler(create_api_destination, "Arn"),
}


class Stacks:
    """The stack with one AlarmDelivery at a time, each in a fresh in-process moto (the
    handlers run inside its CloudFormation). Tests only read, so they share a stack."""

    def __init__(self) -> None:
        self.delivery: str | None = None
        self.outputs: dict[str, str] = {}
        self.mock: Any = None

    def created(self, delivery: str) -> dict[str, str]:
        """The outputs of the stack created with `delivery`, in a moto holding only it."""
        if delivery != self.delivery:
            self.stop()
            self.mock = mock_aws()
            self.mock.start()
            self.outputs = create_stack("failover", **all_parameters(delivery))
            self.delivery = delivery
        return self.outputs

    def stop(self) -> None:
        if self.mock is not None:
            self.mock.stop()
        self.mock, self.delivery = None, None


@pytest.fixture(scope="module")
def stacks() -> Iterator[Stacks]:
    moto_types = parsing.get_model_map()
    assert not set(API_HANDLERS) & set(moto_types), "moto handles these now: drop the handler"
    made = Stacks()
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(parsing, "get_model_map", lambda: {**moto_types, **API_HANDLERS})
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        yield made
        made.stop()


def create_stack(name: str, **parameters: str) -> dict[str, str]:
    """Create the stack, wait for CREATE_COMPLETE, return its outputs."""
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    cloudformation.get_waiter("stack_create_complete").wait(
        StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def all_parameters(delivery: str) -> dict[str, str]:
    return {
        **POLICY_PLACEHOLDERS,
        **NAMES,
        **DELIVERY_PARAMETERS,
        "AlarmDelivery": delivery,
    }


def policy_document(document: str | dict[str, Any]) -> dict[str, Any]:
    """A role policy as read back. moto 5.2 stores a CloudFormation inline policy as the
    Python repr of the dict, not JSON; boto3 decodes JSON documents itself."""
    if isinstance(document, dict):
        return document
    return ast.literal_eval(document)


def subscriptions(topic_arn: str) -> list[dict[str, Any]]:
    sns = boto3.client("sns", region_name=REGION)
    return sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]


def alarm_state_change(alarm_name: str) -> dict[str, Any]:
    """A "CloudWatch Alarm State Change" event as EventBridge puts it on the default bus."""
    return {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": ACCOUNT,
        "time": "2026-11-26T10:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm_name}"],
        "detail": {
            "alarmName": alarm_name,
            "state": {"value": "ALARM", "reason": "Threshold Crossed: 1 datapoint"},
            "previousState": {"value": "OK", "reason": "ok"},
            "configuration": {"metrics": []},
        },
    }


# --- The stack, read back -----------------------------------------------------------------


def test_worker_role_policy_is_the_deploy_policy(stacks: Stacks) -> None:
    """With the parameters at the placeholders, the role's inline policy is the JSON file."""
    outputs = stacks.created("both")
    iam = boto3.client("iam")
    role = iam.get_role(RoleName=NAMES["WorkerRoleName"])["Role"]
    assert outputs["WorkerRoleArn"] == role["Arn"]
    (policy_name,) = iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]
    document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=policy_name)
    assert policy_document(document["PolicyDocument"]) == json.loads(POLICY_FILE.read_text())

    trust = policy_document(role["AssumeRolePolicyDocument"])
    principals = {s["Principal"]["Service"]: s for s in trust["Statement"]}
    assert set(principals) == {"ec2.amazonaws.com", "ecs-tasks.amazonaws.com"}
    assert {s["Action"] for s in principals.values()} == {"sts:AssumeRole"}
    ecs_condition = principals["ecs-tasks.amazonaws.com"]["Condition"]
    assert ecs_condition["StringEquals"] == {"aws:SourceAccount": ACCOUNT}

    profile = iam.get_instance_profile(InstanceProfileName=NAMES["WorkerRoleName"])
    assert [r["Arn"] for r in profile["InstanceProfile"]["Roles"]] == [role["Arn"]]
    assert outputs["WorkerInstanceProfileArn"] == profile["InstanceProfile"]["Arn"]


def test_both_deliveries_at_once(stacks: Stacks) -> None:
    outputs = stacks.created("both")
    assert EVENTBRIDGE_SECRET not in json.dumps(outputs)
    events = boto3.client("events", region_name=REGION)
    assert [r["Name"] for r in events.list_rules()["Rules"]] == [NAMES["AlarmRuleName"]]
    topic_arn = f"arn:aws:sns:{REGION}:{ACCOUNT}:{NAMES['AlarmTopicName']}"
    assert len(subscriptions(topic_arn)) == 1


def test_alarms_watch_the_primary_domain_and_notify_the_topic(stacks: Stacks) -> None:
    outputs = stacks.created("sns")
    topic_arn = outputs["AlarmTopicArn"]
    assert topic_arn == f"arn:aws:sns:{REGION}:{ACCOUNT}:{NAMES['AlarmTopicName']}"
    assert outputs["AlarmNames"].split(",") == list(ALARM_NAMES.values())
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    alarms = {
        a["AlarmName"]: a
        for a in cloudwatch.describe_alarms(AlarmNames=list(ALARM_NAMES.values()))["MetricAlarms"]
    }
    assert set(alarms) == set(ALARM_NAMES.values())
    seen = {
        name: (
            a["Namespace"],
            a["MetricName"],
            a["Statistic"],
            a["ComparisonOperator"],
            a["Threshold"],
            a["Period"],
            a["EvaluationPeriods"],
        )
        for name, a in alarms.items()
    }
    comparison = "GreaterThanOrEqualToThreshold"
    assert seen == {
        "catalog-search-red": ("AWS/ES", "ClusterStatus.red", "Maximum", comparison, 1, 60, 1),
        "catalog-search-yellow": (
            "AWS/ES",
            "ClusterStatus.yellow",
            "Maximum",
            comparison,
            1,
            60,
            5,
        ),
        "catalog-search-5xx": ("AWS/ES", "5xx", "Sum", comparison, 25, 60, 4),
    }
    for alarm in alarms.values():
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert dimensions == {"DomainName": "search-catalog-a", "ClientId": ACCOUNT}
        assert (alarm["AlarmActions"], alarm["OKActions"]) == ([topic_arn], [topic_arn])


def test_topic_subscribes_the_receivers_sns_endpoint(stacks: Stacks) -> None:
    outputs = stacks.created("sns")
    topic_arn = outputs["AlarmTopicArn"]
    # The receiver accepts the output as it is.
    assert SnsSettings(topic_arns=[topic_arn]).topic_arns == [topic_arn]
    (subscription,) = subscriptions(topic_arn)
    assert (subscription["Protocol"], subscription["Endpoint"]) == (
        "https",
        f"{RECEIVER_URL}/alarms/sns",
    )
    sns = boto3.client("sns", region_name=REGION)
    attributes = sns.get_subscription_attributes(SubscriptionArn=subscription["SubscriptionArn"])
    retry = json.loads(attributes["Attributes"]["DeliveryPolicy"])["healthyRetryPolicy"]
    # SNS refuses a policy retrying for longer than an hour; the receiver's replay window
    # (max_age_seconds, 3900 s) assumes exactly that bound.
    assert 0 < retry["numRetries"] * retry["maxDelayTarget"] <= 3600
    assert "RawMessageDelivery" not in attributes["Attributes"] or (
        attributes["Attributes"]["RawMessageDelivery"] == "false"
    )


def test_sns_delivery_alone_makes_no_eventbridge_resources(stacks: Stacks) -> None:
    outputs = stacks.created("sns")
    assert {"ApiDestinationArn", "AlarmRuleArn"}.isdisjoint(outputs)
    events = boto3.client("events", region_name=REGION)
    assert events.list_rules()["Rules"] == []
    assert events.list_connections()["Connections"] == []
    assert events.list_api_destinations()["ApiDestinations"] == []
    iam = boto3.client("iam")
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == [NAMES["WorkerRoleName"]]


def test_eventbridge_sends_the_alarms_state_changes_to_the_receiver(stacks: Stacks) -> None:
    outputs = stacks.created("eventbridge")
    events = boto3.client("events", region_name=REGION)

    connection = events.describe_connection(Name=NAMES["EventBridgeConnectionName"])
    assert connection["AuthorizationType"] == "API_KEY"
    api_key = connection["AuthParameters"]["ApiKeyAuthParameters"]
    assert api_key["ApiKeyName"] == EventBridgeSettings.model_fields["header"].default

    destination = events.describe_api_destination(Name=NAMES["ApiDestinationName"])
    assert (
        destination["ConnectionArn"],
        destination["InvocationEndpoint"],
        destination["HttpMethod"],
        destination["InvocationRateLimitPerSecond"],
    ) == (connection["ConnectionArn"], f"{RECEIVER_URL}/alarms/eventbridge", "POST", 5)
    assert outputs["ApiDestinationArn"] == destination["ApiDestinationArn"]

    rule = events.describe_rule(Name=NAMES["AlarmRuleName"])
    assert (rule["State"], outputs["AlarmRuleArn"]) == ("ENABLED", rule["Arn"])
    assert json.loads(rule["EventPattern"]) == {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": list(ALARM_NAMES.values())},
    }
    # moto 5.2 does not implement TestEventPattern; its matcher is what routes put_events.
    pattern = EventPattern.load(rule["EventPattern"])
    for name in ALARM_NAMES.values():
        event = alarm_state_change(name)
        assert pattern.matches_event(event), name
        # What the rule passes on is what the receiver's EventBridge endpoint parses.
        assert from_eventbridge(event).name == name
    assert not pattern.matches_event(alarm_state_change("billing-high"))

    (target,) = events.list_targets_by_rule(Rule=NAMES["AlarmRuleName"])["Targets"]
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/{NAMES['EventBridgeRoleName']}"
    assert (target["Arn"], target["RoleArn"]) == (destination["ApiDestinationArn"], role_arn)
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 185}
    iam = boto3.client("iam")
    (policy_name,) = iam.list_role_policies(RoleName=NAMES["EventBridgeRoleName"])["PolicyNames"]
    policy = policy_document(
        iam.get_role_policy(RoleName=NAMES["EventBridgeRoleName"], PolicyName=policy_name)[
            "PolicyDocument"
        ]
    )
    assert [(s["Action"], s["Resource"]) for s in policy["Statement"]] == [
        ("events:InvokeApiDestination", destination["ApiDestinationArn"])
    ]
    trust = policy_document(
        iam.get_role(RoleName=NAMES["EventBridgeRoleName"])["Role"]["AssumeRolePolicyDocument"]
    )
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["StringEquals"]["aws:SourceArn"] == rule["Arn"]


def test_eventbridge_delivery_alone_makes_no_topic_and_no_alarm_actions(stacks: Stacks) -> None:
    outputs = stacks.created("eventbridge")
    assert "AlarmTopicArn" not in outputs
    sns = boto3.client("sns", region_name=REGION)
    assert sns.list_topics()["Topics"] == []
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    alarms = cloudwatch.describe_alarms(AlarmNames=list(ALARM_NAMES.values()))["MetricAlarms"]
    assert len(alarms) == len(ALARM_NAMES)
    assert [(a["AlarmActions"], a["OKActions"]) for a in alarms] == [([], [])] * len(alarms)


# --- The template against the receiver -----------------------------------------------


def template_text() -> str:
    return TEMPLATE.read_text()


class TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (`!Ref x` becomes {"Ref": "x"})."""


def _intrinsic(loader: yaml.SafeLoader, tag: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag == "Ref" else f"Fn::{tag}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


TemplateLoader.add_multi_constructor("!", _intrinsic)


@cache
def decoded_template() -> dict[str, Any]:
    """The template as data (tests only read it)."""
    return yaml.load(template_text(), Loader=TemplateLoader)


def test_secret_is_never_echoed() -> None:
    """NoEcho, checked in the template: moto's DescribeStacks masks by value, not by key."""
    parameters = decoded_template()["Parameters"]
    assert [name for name, p in parameters.items() if p.get("NoEcho")] == ["EventBridgeSecret"]


def test_template_posts_to_the_receivers_endpoints() -> None:
    """Both deliveries append to ReceiverUrl the path of one of the receiver's endpoints
    (it serves `/alarms/<endpoint>` for each of CONTENT_TYPES)."""
    resources = decoded_template()["Resources"]
    endpoints = {
        "sns": resources["ReceiverSubscription"]["Properties"]["Endpoint"],
        "eventbridge": resources["ReceiverApiDestination"]["Properties"]["InvocationEndpoint"],
    }
    assert set(endpoints) <= set(CONTENT_TYPES)
    assert endpoints == {e: {"Fn::Sub": f"${{ReceiverUrl}}/alarms/{e}"} for e in endpoints}


def test_header_parameter_follows_the_receivers_setting() -> None:
    """The default header and its pattern are the receiver's (EventBridgeSettings.header)."""
    parameter = decoded_template()["Parameters"]["EventBridgeHeaderName"]
    field = EventBridgeSettings.model_fields["header"]
    patterns = [m.pattern for m in field.metadata if hasattr(m, "pattern")]
    assert (parameter["Default"], [parameter["AllowedPattern"]]) == (field.default, patterns)


@pytest.mark.parametrize(
    ("parameter", "value", "allowed"),
    [
        ("ReceiverUrl", "https://failover.example.com", True),
        ("ReceiverUrl", "https://alb.example.com:8443/failover", True),
        ("ReceiverUrl", "https://failover.example.com/", False),  # would post to //alarms/…
        ("ReceiverUrl", "http://failover.example.com", False),  # SNS and EventBridge need TLS
        ("ReceiverUrl", "https://failover.example.com/?x=1", False),
        ("RecordName", "search.shop.internal", True),
        ("RecordName", "search.shop.internal.", False),  # IAM compares names without the dot
        ("RecordName", "Search.shop.internal", False),
        ("EventBridgeSecret", "", True),  # sns delivery; the Rules refuse it for EventBridge
        ("EventBridgeSecret", "short", False),
        ("EventBridgeSecret", "sixteen-chars-ok", True),
        ("EventBridgeSecret", "with a space in it", False),
    ],
)
def test_parameter_patterns(parameter: str, value: str, allowed: bool) -> None:
    """AllowedPattern, which CloudFormation matches against the whole value (moto does not)."""
    pattern = decoded_template()["Parameters"][parameter]["AllowedPattern"]
    assert (re.fullmatch(pattern, value) is not None) == allowed
