"""Alarm handling without servers: the monitor's decision on an alarm, SNS verification,
payload parsing and routing, and the receiver's config and secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from failover import decisions, logs
from failover.alarms import payloads as alarms
from failover.alarms import sns
from failover.alarms.receiver import ReceiverSecrets
from failover.config import ConfigError, ReceiverSettings, SnsSettings, parse_config
from failover.models import ClusterWatch, SideWatch
from tests.sns_signing import SigningCa, SnsSigner, alarm_message, canonical
from tests.unit.test_config import _cluster

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DOWN = SideWatch(state="down", reason="down: standby gone")


def alarm_decision(views: list[ClusterWatch] | None = None, **overrides: object):
    fields = set(decisions.Guards.__dataclass_fields__)
    guards = decisions.Guards(now=NOW, **{k: v for k, v in overrides.items() if k in fields})
    arguments: dict[str, object] = {
        "alarm": "sns alarm 'search-red'",
        "active": "primary",
        "active_problem": None,
        "views": views or [],
        "quorum": 2,
    } | {k: v for k, v in overrides.items() if k not in fields}
    return decisions.alarm_decision(**arguments, guards=guards)  # type: ignore[arg-type]


# --- the monitor's decision on a firing alarm ------------------------------------------------


def test_alarm_starts_a_failover_that_confirms_first() -> None:
    decision = alarm_decision()
    assert decision.action == "failover"
    assert decision.reason.startswith(decisions.CONFIRMING_ALARM)
    assert "sns alarm 'search-red' says primary is failing" in decision.reason


@pytest.mark.parametrize(
    ("overrides", "action", "prefix"),
    [
        (
            {"active": None, "active_problem": "cannot read the switch"},
            "alert",
            decisions.UNKNOWN_ACTIVE,
        ),
        ({"paused": True, "paused_reason": "drill prep"}, "alert", decisions.PAUSED),
        ({"cooldown_until": NOW + timedelta(minutes=5)}, "alert", decisions.COOLDOWN),
        ({"active": "standby"}, "alert", decisions.MANUAL_FAILBACK),
        ({"hold_until": NOW + timedelta(seconds=30)}, "none", decisions.HOLDING_OFF),
        ({"auto_failover": False}, "alert", decisions.AUTO_OFF),
    ],
)
def test_the_monitors_guards_hold_for_alarms_too(
    overrides: dict[str, object], action: str, prefix: str
) -> None:
    decision = alarm_decision(**overrides)
    assert (decision.action, decision.reason.split(":")[0]) == (action, prefix)


def test_expired_cooldown_and_hold_do_not_block() -> None:
    decision = alarm_decision(
        cooldown_until=NOW - timedelta(seconds=1), hold_until=NOW - timedelta(seconds=1)
    )
    assert decision.action == "failover"


def test_auto_failback_lets_an_alarm_move_back() -> None:
    assert alarm_decision(active="standby", auto_failback=True).action == "failover"


def test_standby_down_from_a_quorum_blocks_the_alarm() -> None:
    views = [
        ClusterWatch(vantage="a", standby=DOWN),
        ClusterWatch(vantage="b", standby=DOWN),
        ClusterWatch(vantage="c"),
    ]
    decision = alarm_decision(views)
    assert decision.action == "alert"
    assert decision.reason.startswith(decisions.BOTH_DOWN)


def test_standby_down_from_fewer_than_quorum_does_not_block() -> None:
    views = [ClusterWatch(vantage="a", standby=DOWN), ClusterWatch(vantage="b")]
    assert alarm_decision(views).action == "failover"


# --- SNS -------------------------------------------------------------------------------------

PRODUCTION = SnsSettings(topic_arns=["arn:aws:sns:eu-west-1:123456789012:alarms"])


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem", None),
        ("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", None),
        ("https://sns.eu-west-1.amazonaws.com:443/SimpleNotificationService-abc.pem", None),
        ("http://sns.eu-west-1.amazonaws.com/x.pem", "scheme 'http' is not https"),
        ("https://sns.eu-west-1.amazonaws.com:8443/x.pem", "is not an SNS host"),
        ("https://sns.eu-west-1.amazonaws.com.evil.net/x.pem", "is not an SNS host"),
        ("https://evil.net/sns.eu-west-1.amazonaws.com/x.pem", "is not an SNS host"),
        ("https://s3.amazonaws.com/x.pem", "is not an SNS host"),
        ("https://user@sns.eu-west-1.amazonaws.com/x.pem", "credentials in the URL"),
        ("https://sns.eu-west-1.amazonaws.com/x.txt", "path is not a .pem certificate"),
        ("https://sns.eu-west-1.amazonaws.com/x.pem?a=1", "query or fragment"),
        ("https://[::1/x.pem", "unparseable"),
        ("sns.eu-west-1.amazonaws.com/x.pem", "is not https"),
    ],
)
def test_certificate_urls_are_https_on_sns_hosts_only(url: str, problem: str | None) -> None:
    found = sns.check_cert_url(url, PRODUCTION.cert_host_pattern)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(sns.BAD_CERT_URL) and problem in found


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> SigningCa:
    return SigningCa(tmp_path_factory.mktemp("ca"))


def _envelope(message: dict[str, object]) -> sns.SnsEnvelope:
    return sns.SnsEnvelope.model_validate(message)


@pytest.mark.parametrize("subject", [None, "ALARM: search"])
def test_canonical_string_matches_the_documented_layout(ca: SigningCa, subject: str | None):
    signer = SnsSigner(ca, "https://127.0.0.1:1/c.pem")
    message = signer.notification(alarm_message("a"), Subject=subject)
    if subject is None:
        del message["Subject"]
    assert _envelope(message).canonical_string() == canonical(message)
    confirmation = signer.subscription_confirmation("https://127.0.0.1:1/confirm?T={token}")
    assert _envelope(confirmation).canonical_string() == canonical(confirmation)


@pytest.mark.parametrize("version", ["1", "2"])
def test_both_signature_versions_verify(ca: SigningCa, version: str) -> None:
    message = SnsSigner(ca, "https://x/c.pem").notification(alarm_message("a"), version=version)
    sns.verify_signature(_envelope(message), ca.signing_cert)
    tampered = _envelope({**message, "Message": alarm_message("b")})
    with pytest.raises(sns.SnsRejected) as caught:
        sns.verify_signature(tampered, ca.signing_cert)
    assert caught.value.reason.startswith(sns.BAD_SIGNATURE)


def test_a_v1_signature_does_not_pass_as_v2(ca: SigningCa) -> None:
    message = SnsSigner(ca, "https://x/c.pem").notification(alarm_message("a"), version="1")
    with pytest.raises(sns.SnsRejected):
        sns.verify_signature(_envelope({**message, "SignatureVersion": "2"}), ca.signing_cert)


def test_message_age_window() -> None:
    signer_time = NOW - timedelta(minutes=30)
    envelope = _envelope(
        {
            "Type": "Notification",
            "MessageId": "m",
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:alarms",
            "Message": "{}",
            "Timestamp": signer_time.isoformat().replace("+00:00", "Z"),
            "SignatureVersion": "1",
            "Signature": "c2ln",
            "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/c.pem",
        }
    )
    sns.check_age(envelope, now=NOW, max_age=timedelta(hours=1))
    with pytest.raises(sns.SnsRejected) as stale:
        sns.check_age(envelope, now=NOW, max_age=timedelta(minutes=10))
    assert stale.value.reason.startswith(sns.STALE)
    with pytest.raises(sns.SnsRejected) as future:
        sns.check_age(envelope, now=NOW - timedelta(hours=1), max_age=timedelta(hours=1))
    assert future.value.reason.startswith(sns.FUTURE)


def test_a_released_message_id_can_be_claimed_again() -> None:
    guard = sns.ReplayGuard(timedelta(hours=1))
    guard.claim("m1")
    with pytest.raises(sns.SnsRejected) as caught:
        guard.claim("m1")
    assert caught.value.status == 409
    guard.release("m1")
    guard.claim("m1")


# --- payloads and routing --------------------------------------------------------------------


def test_sns_message_states() -> None:
    firing = alarms.from_sns_message(alarm_message("red", "ALARM"), message_id="1")
    assert firing.notice is not None and firing.notice.state == "firing"
    resolved = alarms.from_sns_message(alarm_message("red", "OK"), message_id="2")
    assert resolved.notice is not None and resolved.notice.state == "resolved"
    unknown = alarms.from_sns_message(alarm_message("red", "INSUFFICIENT_DATA"), message_id="3")
    assert unknown.notice is None and unknown.raw_state == "INSUFFICIENT_DATA"


def test_payload_errors_name_the_field_and_never_echo_values() -> None:
    secret_looking = "hunter2-do-not-echo"
    with pytest.raises(alarms.PayloadError) as caught:
        alarms.from_sns_message(
            json.dumps({"AlarmName": ["x"], "NewStateValue": secret_looking}), message_id="1"
        )
    text = str(caught.value)
    assert text.startswith(alarms.NOT_AN_ALARM)
    assert "AlarmName" in text and "NewStateValue" in text
    assert secret_looking not in text


def test_invalid_json_is_described() -> None:
    with pytest.raises(alarms.PayloadError) as caught:
        alarms.parse_json(b'{"a": ')
    assert str(caught.value).startswith(f"{alarms.BAD_PAYLOAD}: not valid JSON")


def _routed_config() -> object:
    return parse_config(
        {
            "clusters": [
                _cluster(
                    "catalog",
                    alarms={
                        "cloudwatch": ["catalog-red"],
                        "alertmanager": [{"cluster": "catalog"}],
                    },
                ),
                _cluster(
                    "checkout",
                    alarms={"alertmanager": [{"cluster": "checkout", "alertname": "SearchDown"}]},
                ),
            ]
        }
    )


def test_alarm_names_and_labels_route_to_clusters() -> None:
    config = _routed_config()
    assert alarms.cluster_for_alarm(config, "catalog-red").name == "catalog"  # type: ignore[union-attr,arg-type]
    assert alarms.cluster_for_alarm(config, "nope") is None  # type: ignore[arg-type]
    names = [
        c.name
        for c in alarms.clusters_for_labels(  # type: ignore[arg-type]
            config, {"cluster": "checkout", "alertname": "SearchDown", "severity": "page"}
        )
    ]
    assert names == ["checkout"]
    # Every label of a matcher must be present.
    assert alarms.clusters_for_labels(config, {"cluster": "checkout"}) == []  # type: ignore[arg-type]


# --- receiver config and secrets ----------------------------------------------------------


def test_receiver_config_errors_are_all_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "clusters": [
                    _cluster("a", alarms={"cloudwatch": ["red"], "alertmanager": [{}]}),
                    _cluster("b", alarms={"cloudwatch": ["red"]}),
                ],
                "receiver": {
                    "rate_limit": "lots",
                    "sns": {
                        "topic_arns": ["arn:aws:sqs:us-east-1:123456789012:q"],
                        "cert_host_pattern": "(",
                    },
                    "alertmanager": {"bearer_token_env": "T", "basic_username": "u"},
                    "eventbridge": {"secret_env": "not a variable"},
                },
            }
        )
    errors = "\n".join(caught.value.errors)
    for expected in (
        "clusters[0].alarms.alertmanager: Value error, an empty label set",
        "receiver.rate_limit: 'lots' is not a rate limit",
        "receiver.sns.topic_arns: not SNS topic ARNs",
        "receiver.sns.cert_host_pattern: not a regular expression",
        "receiver.alertmanager: basic auth needs both",
        "receiver.eventbridge.secret_env",
    ):
        assert expected.replace("Value error, ", "") in errors, errors


def test_an_alarm_maps_to_one_cluster() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "clusters": [
                    _cluster("a", alarms={"cloudwatch": ["red"]}),
                    _cluster("b", alarms={"cloudwatch": ["red"]}),
                ]
            }
        )
    assert caught.value.errors == [
        "clusters: alarm 'red' is mapped to both 'a' and 'b'; an alarm speaks for one cluster"
    ]


def test_skipping_sns_signatures_is_for_loopback_only() -> None:
    settings = {
        "sns": {
            "topic_arns": ["arn:aws:sns:us-east-1:123456789012:t"],
            "unsafe_skip_signature_check": True,
        }
    }
    ReceiverSettings.model_validate(settings)
    with pytest.raises(ValueError, match="loopback only"):
        ReceiverSettings.model_validate({**settings, "host": "0.0.0.0"})


def test_alertmanager_needs_exactly_one_auth_method() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ReceiverSettings.model_validate({"alertmanager": {}})


def test_missing_secrets_are_named_and_values_never_shown() -> None:
    settings = ReceiverSettings.model_validate(
        {
            "eventbridge": {"secret_env": "EB_SECRET"},
            "alertmanager": {"basic_username": "am", "basic_password_env": "AM_PASSWORD"},
        }
    )
    with pytest.raises(ConfigError) as caught:
        ReceiverSecrets.from_env(settings, {})
    assert caught.value.errors == [
        "receiver.eventbridge: environment variable EB_SECRET is not set",
        "receiver.alertmanager: environment variable AM_PASSWORD is not set",
    ]
    secrets = ReceiverSecrets.from_env(settings, {"EB_SECRET": "s3cret", "AM_PASSWORD": "pw"})
    assert secrets.alertmanager_basic == b"am:pw"
    assert "s3cret" not in repr(secrets) and "pw" not in repr(secrets)


# --- log context -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workflow_id", "cluster"),
    [
        ("failover-catalog-search", "catalog-search"),
        ("monitor-catalog-search", "catalog-search"),
        ("drill-catalog-search-20261126T152348Z", "catalog-search"),
        ("drill-catalog-search-2026-11-26T15:34:17Z", "catalog-search"),
        ("plan-catalog-search-1a2b3c4d", "catalog-search"),
        ("plan-catalog-search-standby-1a2b3c4d", "catalog-search"),
        ("something-else", None),
    ],
)
def test_log_lines_name_the_cluster_of_their_run(workflow_id: str, cluster: str | None) -> None:
    assert logs.cluster_of(workflow_id) == cluster


# --- connecting to a real Temporal ----------------------------------------------------------


def test_temporal_tls_from_the_environment(tmp_path: Path) -> None:
    from temporalio.service import TLSConfig

    from failover.client.temporal import tls_from_env

    assert tls_from_env({}) is False
    assert tls_from_env({"TEMPORAL_TLS": "true"}) is True
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_bytes(b"CERT")
    key.write_bytes(b"KEY")
    tls = tls_from_env({"TEMPORAL_TLS_CERT": str(cert), "TEMPORAL_TLS_KEY": str(key)})
    assert isinstance(tls, TLSConfig)
    assert (tls.client_cert, tls.client_private_key) == (b"CERT", b"KEY")
    with pytest.raises(RuntimeError, match="both TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY"):
        tls_from_env({"TEMPORAL_TLS_CERT": str(cert)})
