"""Garbage never breaks the fake API server: arbitrary JSON bodies for create, update, the
three patch types and apply, and arbitrary selectors, end in an object or in an ApiError (a
Status the server answers), never in another exception (a 500)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kubefake import ApiError
from tests.kubefake.patches import json_patch, merge_patch, strategic_merge_patch
from tests.kubefake.selectors import parse_field_selector, parse_label_selector
from tests.kubefake.store import NODE_FIELDS, Store

KEYS = st.sampled_from(
    [
        "apiVersion",
        "kind",
        "metadata",
        "spec",
        "status",
        "name",
        "labels",
        "annotations",
        "taints",
        "key",
        "value",
        "effect",
        "unschedulable",
        "resourceVersion",
        "uid",
        "managedFields",
        "manager",
        "fieldsV1",
        "f:metadata",
        "conditions",
        "type",
        "$patch",
        "$setElementOrder/taints",
        "$deleteFromPrimitiveList/finalizers",
        "finalizers",
        "x",
        "op",
        "path",
        "from",
        "nodeInfo",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(
        ["v1", "Node", "n1", "NoSchedule", "add", "remove", "/metadata/labels", "replace", "delete"]
    ),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(KEYS | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)


def node_like() -> st.SearchStrategy[Any]:
    meta = st.fixed_dictionaries(
        {"name": st.just("n1")},
        optional={
            "labels": JSON,
            "annotations": JSON,
            "managedFields": JSON,
            "resourceVersion": JSON,
        },
    )
    return st.one_of(
        JSON,
        st.fixed_dictionaries(
            {"apiVersion": st.just("v1"), "kind": st.just("Node"), "metadata": meta},
            optional={"spec": JSON, "status": JSON},
        ),
    )


def fresh() -> Store:
    store = Store(history_size=50)
    store.create(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"a": "1"}}},
        "maker",
    )
    return store


def survives(call: Any) -> None:
    """`call` returns, or refuses with a 4xx ApiError (any other exception fails the test)."""
    code = 200
    try:
        call()
    except ApiError as err:
        code = err.code
    assert 200 <= code < 500


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(node_like())
def test_create_update_apply(body: Any) -> None:
    store = fresh()
    survives(lambda: store.create(body, "m"))
    survives(lambda: store.update("n1", body, "m"))
    survives(lambda: store.apply("n1", body, "m", force=False))
    survives(lambda: store.apply("n1", body, "m", force=True, subresource="status"))
    survives(lambda: store.replace_patched("n1", body, "m"))
    survives(lambda: store.update("n1", body, "m", subresource="status"))
    survives(lambda: store.apply("n2", body, "m", force=False))
    survives(lambda: store.create_event("default", body))


@SETTINGS
@given(JSON)
def test_patches(patch: Any) -> None:
    store = fresh()
    old = store.get("n1")
    for apply_patch in (merge_patch, strategic_merge_patch, json_patch):

        def run(fn: Any = apply_patch) -> None:
            store.replace_patched("n1", fn(old, patch), "m")

        survives(run)


@SETTINGS
@given(st.text(max_size=60))
def test_selectors(text: str) -> None:
    survives(lambda: parse_label_selector(text))
    survives(lambda: parse_field_selector(text, NODE_FIELDS))
