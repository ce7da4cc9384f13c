"""A Region's checks before and after www moves: Magento's health check through its load
balancer, and a guest cart, the write a read-only database refuses."""

from __future__ import annotations

import pytest

from failover import decisions

URL = "http://alb-west.example/health_check.php"
READ_ONLY = (
    "SQLSTATE[HY000]: General error: 1290 The MySQL server is running with the --read-only"
    " option so it cannot execute this statement"
)
CART_ID = "a" * 32


def test_health_check_passes_on_200_only() -> None:
    assert decisions.app_health_problem(url=URL, status=200) is None
    assert decisions.app_health_problem(url=URL, status=204) == (
        f"app unhealthy: {URL} answered HTTP 204"
    )


@pytest.mark.parametrize(
    ("status", "meaning"),
    [
        (502, "the load balancer got no valid answer from an app server"),
        (503, "the load balancer has no healthy app server to route to"),
        (504, "an app server did not answer the load balancer in time"),
        (500, "Magento cannot reach its database or cache"),
    ],
)
def test_health_check_errors_say_who_failed(status: int, meaning: str) -> None:
    problem = decisions.app_health_problem(url=URL, status=status)

    assert problem == f"app unhealthy: {URL} answered HTTP {status}: {meaning}"
    assert problem.startswith(decisions.APP_UNHEALTHY)


def test_health_check_unreachable_names_the_connection_error() -> None:
    problem = decisions.app_health_problem(
        url=URL, status=None, error="ConnectError: [Errno 111] Connection refused"
    )

    assert (
        problem == f"app unhealthy: {URL} unreachable: ConnectError: [Errno 111] Connection refused"
    )


def test_a_cart_id_with_no_errors_passes() -> None:
    body = {"data": {"createEmptyCart": CART_ID}}

    assert decisions.cart_problem(status=200, body=body) is None
    assert decisions.created_cart(body) == CART_ID


def test_a_read_only_database_fails_the_cart_with_its_own_words() -> None:
    # Magento (graphql-php 14, developer mode) when the INSERT hits an Aurora reader.
    body = {
        "errors": [
            {
                "debugMessage": READ_ONLY,
                "message": "Internal server error",
                "extensions": {"category": "internal"},
                "path": ["createEmptyCart"],
            }
        ],
        "data": {"createEmptyCart": None},
    }

    problem = decisions.cart_problem(status=200, body=body)

    assert problem == f"cart failed: createEmptyCart error: Internal server error ({READ_ONLY})"
    assert decisions.created_cart(body) is None


def test_production_mode_errors_are_quoted_as_they_come() -> None:
    body = {"errors": [{"message": "Internal server error"}], "data": {"createEmptyCart": None}}

    assert decisions.cart_problem(status=200, body=body) == (
        "cart failed: createEmptyCart error: Internal server error"
    )


def test_errors_fail_the_cart_even_with_an_id() -> None:
    body = {"errors": [{"message": "Something else"}], "data": {"createEmptyCart": CART_ID}}

    assert decisions.cart_problem(status=200, body=body) == (
        "cart failed: createEmptyCart error: Something else"
    )


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        (
            503,
            None,
            "cart failed: createEmptyCart answered HTTP 503: the load balancer has no healthy "
            "app server to route to",
        ),
        (400, {"errors": [{"message": "Query string is empty."}]}, "answered HTTP 400"),
        (200, None, "answered HTTP 200 without a JSON object"),
        (200, {"data": {"createEmptyCart": ""}}, "returned no cart id ('')"),
        (200, {"data": None}, "returned no cart id (None)"),
    ],
)
def test_no_cart_is_a_problem_naming_why(status: int, body: object, problem: str) -> None:
    found = decisions.cart_problem(status=status, body=body)

    assert found is not None and found.startswith(decisions.CART_FAILED)
    assert problem in found
    assert decisions.created_cart(body) is None
