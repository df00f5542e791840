"""The attack catalog and the attack classes agree, and make_worker_attack / make_server_attack
refuse exactly the parameter values `garfield validate` refuses (tests/support/param_cases.py)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from garfield.attacks import SERVER_ATTACKS, WORKER_ATTACKS, make_server_attack, make_worker_attack, server, worker
from garfield.attacks._common import conformance_errors, implementations
from garfield.attacks.catalog import WITHHOLDING, AttackSide
from garfield.attacks.types import LabelTransform, ServerAttack, WorkerAttack

from support.param_cases import Case, bad_values, good_values, value_id

MAKE = {"worker": make_worker_attack, "server": make_server_attack}
BAD = [(c, v) for c, v in bad_values() if c.kind in ("worker", "server")]
GOOD = [(c, v) for c, v in good_values() if c.kind in ("worker", "server")]
G = torch.tensor([1.0, -2.0, 3.0, 0.5])
PEERS = torch.tensor([[1.0, 0.0, 2.0, 0.0], [3.0, 2.0, 2.0, 1.0], [2.0, 1.0, 5.0, 2.0]])


def test_every_attack_is_implemented_with_exactly_its_parameters() -> None:
    assert conformance_errors(WORKER_ATTACKS, worker._CLASSES) == []
    assert conformance_errors(SERVER_ATTACKS, server._CLASSES) == []


def test_every_attack_satisfies_the_protocol_the_runtime_types_it_with() -> None:
    for name in WORKER_ATTACKS:
        attack = make_worker_attack(name)
        assert isinstance(attack, WorkerAttack), name
        assert attack.label_transform is None or isinstance(attack.label_transform, LabelTransform), name
    assert make_worker_attack("labelflip").label_transform is not None
    assert all(isinstance(make_server_attack(name), ServerAttack) for name in SERVER_ATTACKS)


def test_conformance_reports_other_parameters_and_defaults() -> None:
    class Scaled:
        def __init__(self, factor: float = 1.0) -> None:
            pass

    classes = {**server._CLASSES, "reversed": Scaled}
    del classes["silent"]
    assert conformance_errors(SERVER_ATTACKS, classes) == [
        "silent: in the catalog, not implemented",
        "reversed: the constructor takes ['factor'], the catalog declares ['scale']",
        "reversed: factor has a default in the constructor",
    ]


def test_a_module_whose_classes_disagree_with_the_catalog_fails_at_import() -> None:
    """`implementations` is what worker.py and server.py build their tables with at import."""
    assert implementations(AttackSide.SERVER, server._CLASSES.values()) == server._CLASSES
    with pytest.raises(AssertionError, match=r"^server attack catalog and implementations disagree: "
                                             r"silent: in the catalog, not implemented$"):
        implementations(AttackSide.SERVER, [c for name, c in server._CLASSES.items() if name != "silent"])


def test_withholding_and_silent_agree() -> None:
    """The catalog's `withholds` is what the classes' `silent` (or a random drop) does."""
    for table, classes in ((WORKER_ATTACKS, worker._CLASSES), (SERVER_ATTACKS, server._CLASSES)):
        for name, spec in table.items():
            assert spec.withholds == (classes[name].silent or name == "drop"), name
    assert WITHHOLDING == {"crash", "silent", "drop"}


@pytest.mark.parametrize("case,value", BAD, ids=[f"{c.id}={value_id(v)}" for c, v in BAD])
def test_constructor_refuses_what_validation_refuses(case: Case, value: Any) -> None:
    with pytest.raises(ValueError) as info:
        MAKE[case.kind](case.name, {case.param: value})
    text = str(info.value)
    assert text.startswith(f"{case.kind} attack {case.name} needs ") and text.endswith(f"got {value!r}"), text


@pytest.mark.parametrize("case,value", GOOD, ids=[f"{c.id}={value_id(v)}" for c, v in GOOD])
def test_constructor_accepts_the_edge_values_and_the_attack_runs(case: Case, value: Any) -> None:
    attack = MAKE[case.kind](case.name, {case.param: value})
    if case.kind == "worker":
        out = attack.corrupt(G, PEERS, 7, 2, 0)
    else:
        out = attack.corrupt(G, 0)
    assert out is None or out.shape == G.shape
