"""The `storefronts:` section: a storefront in two Regions, validated up front with every
error listed by its path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from failover.config import ConfigError, StorefrontConfig, parse_config

ACCOUNT = "123456789012"


def site(region: str, n: int) -> dict[str, Any]:
    elb = f"arn:aws:elasticloadbalancing:{region}:{ACCOUNT}"
    return {
        "region": region,
        "load_balancer_arn": f"{elb}:loadbalancer/app/web-{n}/50dc6c495c0c918{n}",
        "target_group_arn": f"{elb}:targetgroup/app-{n}/73e2d6bc24d8a06{n}",
        "url": f"http://alb-{region}.shop.example",
        "auto_scaling_group": f"magento-app-{region}",
        "capacity": 4,
        "database_cluster_arn": f"arn:aws:rds:{region}:{ACCOUNT}:cluster:shop-{region}",
        "cache_replication_group": f"shop-cache-{region}",
        "search_side": "primary" if n == 1 else "standby",
    }


STOREFRONT: dict[str, Any] = {
    "name": "shop",
    "primary": site("us-east-1", 1),
    "dr": site("us-west-2", 2),
    "www": {
        "type": "route53",
        "hosted_zone_id": "Z1",
        "record_name": "www.shop.example",
        "primary_value": "alb-us-east-1.shop.example",
        "standby_value": "alb-us-west-2.shop.example",
    },
    "database": {"global_cluster_id": "shop-global"},
    "cache_datastore": {"global_replication_group_id": "ldgnf-shop-cache"},
    "search_cluster": "catalog",
    "checks": {"url": "http://www.shop.example"},
}
CLUSTER = {
    "name": "catalog",
    "primary": {"nodes": ["http://127.0.0.1:9200"]},
    "standby": {"nodes": ["http://127.0.0.1:9201"]},
    "switch": {
        "type": "route53",
        "hosted_zone_id": "Z1",
        "record_name": "search.shop.example",
        "primary_value": "a.x",
        "standby_value": "b.x",
    },
}


def config_with(storefront: dict[str, Any]) -> dict[str, Any]:
    return {"clusters": [CLUSTER], "storefronts": [storefront]}


def storefront(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(STOREFRONT)
    for path, value in changes.items():
        target = raw
        *parents, last = path.split("__")
        for part in parents:
            target = target[part]
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    return raw


def errors(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with(raw))
    return caught.value.errors


def test_a_storefront_parses_with_its_defaults() -> None:
    config = parse_config(config_with(storefront()))
    shop = config.storefront("shop")
    assert isinstance(shop, StorefrontConfig)
    assert shop.site("dr").region == "us-west-2"
    assert shop.database.max_lag_seconds == 5.0
    assert shop.database.allow_data_loss is False
    assert shop.confirm.health_path == "/health_check.php"
    assert shop.confirm.needed() == 1


def test_storefronts_are_optional() -> None:
    assert parse_config({"clusters": [CLUSTER]}).storefronts == []


def test_an_unknown_storefront_is_named_with_those_configured() -> None:
    config = parse_config(config_with(storefront()))
    with pytest.raises(ConfigError, match="no storefront named 'nope' \\(configured: shop\\)"):
        config.storefront("nope")


def test_every_error_is_listed_with_its_path() -> None:
    found = errors(
        storefront(
            primary__capacity=0,
            dr__auto_scaling_group="",
            database__global_cluster_id="not valid!",
        )
    )
    assert any(e.startswith("storefronts[0].primary.capacity:") for e in found), found
    assert any(e.startswith("storefronts[0].dr.auto_scaling_group:") for e in found), found
    assert any(e.startswith("storefronts[0].database.global_cluster_id:") for e in found), found


def test_an_arn_from_another_region_is_refused() -> None:
    wrong = STOREFRONT["primary"]["database_cluster_arn"]
    (error,) = errors(storefront(dr__database_cluster_arn=wrong))
    assert "not in region us-west-2: database_cluster_arn is in us-east-1" in error


def test_two_sites_in_one_region_are_refused() -> None:
    (error,) = errors(storefront(dr=site("us-east-1", 2)))
    assert "primary and dr are both in us-east-1" in error


def test_the_search_cluster_must_be_configured() -> None:
    (error,) = errors(storefront(search_cluster="elsewhere"))
    assert "names search_cluster 'elsewhere', which is not in clusters (catalog)" in error


def test_search_sides_must_be_named_and_differ() -> None:
    (missing,) = errors(storefront(dr__search_side=None))
    assert "name the search_side" in missing
    (same,) = errors(storefront(dr__search_side="primary"))
    assert "both name search_side primary" in same


def test_a_cache_datastore_needs_each_regions_group() -> None:
    (error,) = errors(storefront(dr__cache_replication_group=None))
    assert "name each Region's cache_replication_group" in error


def test_a_quorum_larger_than_the_vantage_points_is_refused() -> None:
    (error,) = errors(storefront(confirm={"vantage_points": ["a", "b"], "quorum": 3}))
    assert "quorum 3 is more than the 2 vantage point(s)" in error


def test_storefront_names_must_fit_workflow_ids_and_be_unique() -> None:
    (bad,) = errors(storefront(name="Shop_1"))
    assert "'Shop_1' is not a valid name" in bad
    with pytest.raises(ConfigError, match="storefront"):
        parse_config({"clusters": [CLUSTER], "storefronts": [storefront(), storefront()]})


def test_the_readmes_storefront_example_is_a_valid_config() -> None:
    """The README's example is what a team copies: it must pass validation as written."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index("```yaml\nstorefronts:") + len("```yaml\n")
    example = yaml.safe_load(readme[start : readme.index("```", start)])
    search = CLUSTER | {"name": "catalog-search"}
    config = parse_config({"clusters": [search], **example})
    shop = config.storefront("shop")
    assert (shop.primary.region, shop.dr.region) == ("eu-west-1", "eu-central-1")
    assert shop.confirm.needed() == 2
