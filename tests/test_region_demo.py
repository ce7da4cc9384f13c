"""`failover demo --region` as a user runs it: a separate process from a fresh state
directory, its JSON parsed and each figure checked against the others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from failover import decisions

pytestmark = [pytest.mark.slow, pytest.mark.regions]

FAILOVER = str(Path(sys.executable).parent / "failover")
DEMO_DEADLINE_S = 150.0
PRIMARY_ALB, DR_ALB = "alb-us-east-1.shop.internal", "alb-us-west-2.shop.internal"
# Rounding: every figure in the report is rounded to the millisecond.
EPSILON = 0.005


def test_demo_region_json_shows_the_whole_switch_as_customers_and_aws_see_it(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [FAILOVER, "demo", "--region", "--json"],
        capture_output=True,
        text=True,
        timeout=DEMO_DEADLINE_S,
        stdin=subprocess.DEVNULL,
        env=os.environ | {"FAILOVER_STATE_DIR": str(tmp_path)},
    )
    assert done.stdout.strip(), done.stderr[-4000:]
    report = json.loads(done.stdout)  # the whole of stdout is one JSON object
    assert done.returncode == 0, json.dumps(report, indent=1)[-6000:]

    assert report["result"] == "failed_over", report["reason"]
    assert (report["from_region"], report["to_region"]) == ("primary", "dr")
    assert report["regions"] == {"primary": "us-east-1", "dr": "us-west-2"}
    assert report["mode"] == "ungraceful" and report["database_switched"] is True
    assert report["trigger"] == "manual"
    assert "state_dir" not in report  # a passing demo removed its logs and history

    # Before the fault, a dry run found the DR Region ready for an ungraceful failover.
    assert report["plan"][-1] == "preflight: ok"
    assert any(line.startswith("database: FailoverGlobalCluster") for line in report["plan"])
    # Before the fault, read from outside: www on the primary ALB, the primary writing, a
    # search and a cart through www answered there.
    before = report["before"]
    assert before["www"] == [PRIMARY_ALB]
    assert before["writer"].endswith(":cluster:magento-us-east-1")
    assert before["customer"]["ok"] and before["customer"]["regions"] == ["us-east-1"]
    # After, read from moto and the simulated Aurora, not from the result.
    after = report["after"]
    assert after["www"] == [DR_ALB] == [report["dr_alb_name"]]
    assert after["writer"] == report["dr_database_cluster_arn"]
    assert after["writer"].startswith("arn:aws:rds:us-west-2:")
    assert after["writer"].endswith(":cluster:magento-us-west-2")
    assert after["search_record"] == ["es-standby.shop.internal"]
    assert after["customer"]["ok"] and after["customer"]["regions"] == ["us-west-2"]
    assert report["primary_region_restored"] is True

    # Search moved with the Region, by the switch's own failover of the cluster.
    search = report["search"]
    assert (search["result"], search["trigger"]) == ("failed_over", "region"), search
    assert (search["from"], search["to"]) == ("primary", "standby")

    # The operator's approval of the ungraceful failover.
    approval = report["approval"]
    assert approval["asked"].startswith(decisions.NEEDS_APPROVAL)
    assert approval["approved_by"] == approval["identity"] == "demo"
    assert approval["refused"] is None
    assert 0 < approval["seen_waiting_seconds"] <= approval["approved_seconds"]

    # The timeline: sequential steps, each after the fault, and their sum inside the RTO.
    steps = report["steps"]
    names = [s["name"] for s in steps]
    assert names[:4] == ["snapshot", "confirm", "preflight", "awaiting_approval"]
    for name in ("scale", "wait_capacity", "database", "wait_database", "search", "verify_dr"):
        assert name in names
    assert names[-1] == "verify"
    assert all(s["outcome"] == "ok" for s in steps), steps
    assert all(s["at_seconds"] >= 0 for s in steps)
    waited = steps[names.index("awaiting_approval")]["seconds"]
    assert approval["run_waited_seconds"] == waited
    total = sum(s["seconds"] for s in steps)
    assert abs(report["steps_seconds_total"] - total) < EPSILON * len(steps)
    rto = report["rto_seconds"]
    assert rto > 0
    assert rto >= total - EPSILON * len(steps)
    assert rto >= report["switch_started_seconds"] + report["workflow_seconds"] - EPSILON
    assert abs(report["rto_without_approval_seconds"] - (rto - waited)) < EPSILON
    assert rto <= report["result_seen_seconds"] + EPSILON

    # The data-loss window: the DR cluster's replication lag when the writer was lost.
    window = report["data_loss_window_seconds"]
    assert isinstance(window, int | float) and window >= 0
    assert window == report["replication_lag_at_fault_seconds"]

    # What customers saw through www: failures from the fault until www moved, then served
    # by the DR Region; served again no later than the run's own check through www.
    seen = report["storefront_requests"]
    assert 0 < seen["failed"] <= seen["total"]
    assert seen["failed"] == seen["failed_searches"] + seen["failed_carts"]
    assert sum(seen["failures"].values()) == seen["failed"]
    assert 0 <= seen["first_failure_seconds"] <= seen["last_failure_seconds"]
    serving = report["storefront_serving_again_seconds"]
    assert serving == seen["serving_again_seconds"]
    assert seen["last_failure_seconds"] < serving
    # Not before www moved (a round is timed from its start, so within one round of it).
    assert serving >= steps[names.index("switch")]["at_seconds"] - seen["mean_round_seconds"]
    assert serving <= rto + 1.0
    assert abs(seen["outage_seen_seconds"] - (serving - seen["first_failure_seconds"])) < EPSILON
    assert seen["served_by_region"]["us-west-2"] > 0

    assert report["workflow_id"] == "region-shop"
    assert report["ui_url"].endswith(f"/workflows/region-shop/{report['run_id']}/history")
