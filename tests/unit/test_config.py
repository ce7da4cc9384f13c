"""Config validation: every error is reported, each with its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from failover.config import (
    ConfigError,
    MonitorSettings,
    ProbeSettings,
    load_config,
    parse_config,
)

CONFIGS = Path(__file__).parent.parent / "configs"


def errors_of(name: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(CONFIGS / name)
    return caught.value.errors


def test_valid_config_loads_with_defaults() -> None:
    config = load_config(CONFIGS / "valid.yaml")
    cluster = config.cluster("catalog-search")
    assert cluster.primary.auth.type == "basic"
    assert cluster.primary.tls.verify is True
    assert cluster.standby.auth.type == "sigv4"
    assert cluster.probe.yellow_policy == "degraded"
    assert cluster.switch.record_name == "search.shop.internal."
    assert config.task_queue == "search-failover"


def test_every_error_is_reported_with_its_path() -> None:
    errors = errors_of("many-errors.yaml")
    paths = [e.split(":")[0] for e in errors]
    assert paths == [
        "clusters[0].name",
        "clusters[0].primary.nodes[0]",
        "clusters[0].primary.auth.basic.password_env",
        "clusters[0].primary.auth.basic.password",
        "clusters[0].standby.nodes",
        "clusters[0].probe.interval_seconds",
        "clusters[0].probe.yellow_policy",
        "clusters[0].switch.route53.record_type",
    ]


def test_a_secret_in_the_file_is_refused_with_advice() -> None:
    errors = errors_of("many-errors.yaml")
    [secret] = [e for e in errors if e.startswith("clusters[0].primary.auth.basic.password:")]
    assert "secret values do not belong in the config file" in secret
    assert "hunter2" not in " ".join(errors)


def test_unknown_switch_type_names_the_expected_ones() -> None:
    [error] = errors_of("bad-switch-type.yaml")
    assert error.startswith("clusters[0].switch:")
    assert "'carrier-pigeon'" in error and "'route53'" in error


def test_duplicate_nodes_are_named() -> None:
    errors = errors_of("duplicate-names.yaml")
    assert "clusters[0].primary.nodes: node http://127.0.0.1:9200/ is listed twice" in errors


def _minimal(**switch: object) -> dict:
    return {
        "name": "catalog",
        "primary": {"nodes": ["http://127.0.0.1:9200"]},
        "standby": {"nodes": ["http://127.0.0.1:9201"]},
        "switch": {
            "type": "route53",
            "hosted_zone_id": "Z1",
            "record_name": "s.x",
            "primary_value": "a.x",
            "standby_value": "b.x",
        }
        | switch,
    }


def test_duplicate_cluster_names_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"clusters": [_minimal(), _minimal()]})
    assert caught.value.errors == ["clusters: cluster names must be unique; repeated: catalog"]


def test_identical_primary_and_standby_values_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"clusters": [_minimal(standby_value="A.x.")]})
    assert caught.value.errors == [
        "clusters[0].switch.route53: primary_value and standby_value are the same; "
        "a switch would be a no-op"
    ]


def test_malformed_files_get_one_clear_error() -> None:
    [not_yaml] = errors_of("not-yaml.yaml")
    assert "not valid YAML" in not_yaml
    [not_mapping] = errors_of("not-a-mapping.yaml")
    assert "top level must be a mapping" in not_mapping
    [missing] = errors_of("does-not-exist.yaml")
    assert "cannot read" in missing


def test_unknown_cluster_lists_the_configured_ones() -> None:
    config = load_config(CONFIGS / "valid.yaml")
    with pytest.raises(ConfigError) as caught:
        config.cluster("nope")
    assert caught.value.errors == ["clusters: no cluster named 'nope' (configured: catalog-search)"]


# --- the monitor's settings -----------------------------------------------------------------


def _cluster(name: str = "catalog", **sections: object) -> dict:
    return _minimal() | {"name": name} | sections


def _config_errors(*clusters: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config({"clusters": list(clusters)})
    return caught.value.errors


def test_monitor_defaults() -> None:
    monitor = parse_config({"clusters": [_minimal()]}).cluster("catalog").monitor
    assert monitor.enabled is True
    assert monitor.auto_failover is True
    assert monitor.auto_failback is False
    assert monitor.cooldown_seconds == 600
    assert monitor.vantage_points == []
    assert monitor.quorum is None


@pytest.mark.parametrize(("count", "majority"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_default_quorum_is_a_majority(count: int, majority: int) -> None:
    assert MonitorSettings().quorum_of(count) == majority


def test_configured_quorum_wins_over_the_majority() -> None:
    monitor = MonitorSettings(vantage_points=["a", "b", "c"], quorum=3)
    assert monitor.quorum_of(3) == 3


def test_vantages_default_to_the_workers_own_queue() -> None:
    assert MonitorSettings().vantages("search-failover") == ["search-failover"]
    configured = MonitorSettings(vantage_points=["az-a", "az-b"])
    assert configured.vantages("search-failover") == ["az-a", "az-b"]


def test_quorum_above_the_vantage_count_is_refused() -> None:
    errors = _config_errors(_cluster(monitor={"vantage_points": ["a", "b"], "quorum": 3}))
    assert errors == [
        "clusters[0].monitor: quorum 3 is more than the 2 vantage point(s) configured"
    ]


def test_quorum_above_one_without_vantage_points_is_refused() -> None:
    [error] = _config_errors(_cluster(monitor={"quorum": 2}))
    assert error.startswith("clusters[0].monitor: quorum 2 is more than the 1 vantage point(s)")


def test_quorum_equal_to_the_vantage_count_is_accepted() -> None:
    config = parse_config(
        {"clusters": [_cluster(monitor={"vantage_points": ["a", "b"], "quorum": 2})]}
    )
    assert config.cluster("catalog").monitor.quorum == 2


def test_quorum_of_zero_is_refused() -> None:
    [error] = _config_errors(_cluster(monitor={"quorum": 0}))
    assert error.startswith("clusters[0].monitor.quorum:")


def test_repeated_vantage_points_are_refused() -> None:
    errors = _config_errors(_cluster(monitor={"vantage_points": ["az-a", "az-b", "az-a"]}))
    assert errors == [
        "clusters[0].monitor.vantage_points: vantage point names must be unique; repeated: az-a"
    ]


def test_blank_vantage_point_is_refused() -> None:
    [error] = _config_errors(_cluster(monitor={"vantage_points": ["az-a", " "]}))
    assert error == (
        "clusters[0].monitor.vantage_points: vantage point names (task queues) must not be empty"
    )


def test_failure_window_too_short_for_the_threshold_is_refused() -> None:
    probe = {"interval_seconds": 5, "failure_threshold": 3, "failure_window_seconds": 9}
    [error] = _config_errors(_cluster(probe=probe))
    assert error.startswith("clusters[0].probe: failure_window_seconds 9 is shorter than")
    assert "(10s)" in error


def test_failure_window_of_exactly_the_rounds_is_accepted() -> None:
    probe = ProbeSettings(interval_seconds=5, failure_threshold=3, failure_window_seconds=10)
    assert probe.window_seconds == 10


def test_default_window_is_three_times_threshold_rounds_with_timeouts() -> None:
    assert ProbeSettings().window_seconds == 3 * 3 * (5.0 + 3.0)
    probe = ProbeSettings(interval_seconds=2, timeout_seconds=1, failure_threshold=4)
    assert probe.window_seconds == 36


def test_default_window_always_fits_the_rounds() -> None:
    probe = ProbeSettings(interval_seconds=300, timeout_seconds=0.1, failure_threshold=20)
    assert probe.window_seconds >= (probe.failure_threshold - 1) * probe.interval_seconds


def test_down_share_defaults_to_every_node() -> None:
    assert ProbeSettings().down_share == 1.0


@pytest.mark.parametrize(
    ("share", "message"), [(0, "greater than 0"), (1.01, "less than or equal to 1")]
)
def test_down_share_out_of_bounds_is_refused(share: float, message: str) -> None:
    [error] = _config_errors(_cluster(probe={"down_share": share}))
    assert error.startswith("clusters[0].probe.down_share:")
    assert message in error


@pytest.mark.parametrize("share", [0.01, 0.5, 1])
def test_down_share_within_bounds_is_accepted(share: float) -> None:
    assert ProbeSettings(down_share=share).down_share == share


def test_expected_cluster_uuid_is_optional() -> None:
    cluster = parse_config({"clusters": [_minimal()]}).cluster("catalog")
    assert cluster.primary.expected_cluster_uuid is None
    side = dict(_minimal()["standby"], expected_cluster_uuid="uuid-b")
    cluster = parse_config({"clusters": [_cluster(standby=side)]}).cluster("catalog")
    assert cluster.standby.expected_cluster_uuid == "uuid-b"


def test_every_monitor_and_probe_error_is_reported_at_once() -> None:
    errors = _config_errors(
        _cluster("first", probe={"down_share": 0}, monitor={"cooldown_seconds": -1}),
        _cluster(
            "second",
            probe={"failure_window_seconds": 1},
            monitor={"quorum": 3, "vantage_points": ["a", "b"]},
        ),
        _cluster("third", monitor={"vantage_points": ["a", "a"], "colldown_seconds": 60}),
    )
    paths = [e.split(":")[0] for e in errors]
    assert paths == [
        "clusters[0].probe.down_share",
        "clusters[0].monitor.cooldown_seconds",
        "clusters[1].probe",
        "clusters[1].monitor",
        "clusters[2].monitor.vantage_points",
        "clusters[2].monitor.colldown_seconds",
    ]
