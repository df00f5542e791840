"""Attack behaviours: each one's output against its definition, parameters, frameworks."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from garfield.attacks import SERVER_ATTACKS, WORKER_ATTACKS, make_server_attack, make_worker_attack
from garfield.attacks.worker import alie_z


def test_catalog_imports_without_torch():
    code = (
        "import sys; import garfield.attacks, garfield.attacks.catalog, garfield.aggregators, "
        "garfield.aggregators.catalog, garfield.params; assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_catalog_name_builds_with_its_defaults():
    for name in WORKER_ATTACKS:
        assert make_worker_attack(name, {}).name == name
    for name in SERVER_ATTACKS:
        assert make_server_attack(name, None).name == name


def test_unknown_names_and_parameters_are_clear_errors():
    with pytest.raises(ValueError, match="unknown worker attack 'flip'"):
        make_worker_attack("flip", {})
    with pytest.raises(ValueError, match=r"worker attack signflip has no parameter 'epsilon' \(parameters: scale\)"):
        make_worker_attack("signflip", {"epsilon": 1})
    with pytest.raises(ValueError, match="worker attack drop needs 0 <= p <= 1, got 2"):
        make_worker_attack("drop", {"p": 2})
    with pytest.raises(ValueError, match=r"server attack silent has no parameter 'x' \(parameters: none\)"):
        make_server_attack("silent", {"x": 1})
    with pytest.raises(ValueError, match="value to be one of"):
        make_worker_attack("nan", {"value": "zero"})


G = torch.tensor([1.0, -2.0, 3.0, 0.5])
PEERS = torch.tensor([[1.0, 0.0, 2.0, 0.0], [3.0, 2.0, 2.0, 1.0], [2.0, 1.0, 5.0, 2.0]])


def test_signflip_scales_and_reverses():
    assert torch.equal(make_worker_attack("signflip", {}).corrupt(G, None, 7, 2, 0), -G)
    assert torch.equal(make_worker_attack("signflip", {"scale": 100}).corrupt(G, None, 7, 2, 0), -100 * G)


def test_random_and_gaussian_are_bounded_seeded_and_unrelated_to_the_gradient():
    big = torch.zeros(100_000)
    a = make_worker_attack("random", {"scale": 3.0, "seed": 1}).corrupt(big, None, 7, 2, 0)
    assert a.abs().max() <= 3.0 and a.std() == pytest.approx(3.0 / math.sqrt(3), rel=0.02)
    assert torch.equal(a, make_worker_attack("random", {"scale": 3.0, "seed": 1}).corrupt(big, None, 7, 2, 0))
    g = make_worker_attack("gaussian", {"seed": 2}).corrupt(big, None, 7, 2, 0)
    assert g.std() == pytest.approx(200.0, rel=0.02) and abs(g.mean()) < 5


def test_drop_zeroes_a_fraction_p_of_coordinates_and_keeps_the_rest():
    g = torch.arange(1, 100_001, dtype=torch.float32)
    out = make_worker_attack("drop", {"p": 0.3, "seed": 0}).corrupt(g, None, 7, 2, 0)
    zero = out == 0
    assert zero.float().mean() == pytest.approx(0.3, abs=0.01)
    assert torch.equal(out[~zero], g[~zero])


def test_alie_z_follows_baruch_et_al():
    # n=25, f=6: s = floor(25/2 + 1) - 6 = 7, z = Phi^-1((25 - 7) / 25) = Phi^-1(0.72).
    assert alie_z(25, 6) == pytest.approx(0.5828415, abs=1e-6)
    # n=50, f=24: s = 2, z = Phi^-1(0.96).
    assert alie_z(50, 24) == pytest.approx(1.7506861, abs=1e-6)


def test_a_little_is_enough_is_mean_plus_z_std_of_the_honest_vectors():
    attack = make_worker_attack("little", {})
    assert attack.omniscient
    out = attack.corrupt(G, PEERS, 25, 6, 0)
    expected = PEERS.mean(0) + alie_z(25, 6) * PEERS.std(0, unbiased=False)
    assert torch.allclose(out, expected)
    fixed = make_worker_attack("little", {"z": -1.5}).corrupt(G, list(PEERS), 7, 2, 0)
    assert torch.allclose(fixed, PEERS.mean(0) - 1.5 * PEERS.std(0, unbiased=False))
    with pytest.raises(ValueError, match="omniscient"):
        attack.corrupt(G, None, 7, 2, 0)


def test_fall_of_empires_is_minus_epsilon_times_the_honest_mean():
    out = make_worker_attack("empire", {"epsilon": 0.5}).corrupt(G, PEERS, 7, 2, 0)
    assert torch.allclose(out, -0.5 * PEERS.mean(0))


def test_mimic_copies_one_honest_vector():
    out = make_worker_attack("mimic", {"target": 1}).corrupt(G, PEERS, 7, 2, 0)
    assert torch.equal(out, PEERS[1])


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_fills_the_vector(value):
    out = make_worker_attack("nan", {"value": value}).corrupt(G, None, 7, 2, 0)
    assert out.shape == G.shape and bool((torch.isnan(out) if value == "nan" else out == float(value)).all())


def test_crash_is_honest_then_silent():
    attack = make_worker_attack("crash", {"after": 3})
    assert attack.silent
    assert torch.equal(attack.corrupt(G, None, 7, 2, 2), G)
    assert attack.corrupt(G, None, 7, 2, 3) is None


def test_labelflip_maps_targets_on_torch_and_tensorflow():
    attack = make_worker_attack("labelflip", {"num_classes": 10})
    assert torch.equal(attack.label_transform(torch.tensor([0, 3, 9])), torch.tensor([9, 6, 0]))
    assert torch.equal(attack.corrupt(G, None, 7, 2, 0), G)
    tf = pytest.importorskip("tensorflow")
    flipped = attack.label_transform(tf.constant([0, 3, 9], dtype=tf.int64))
    assert flipped.dtype == tf.int64 and flipped.numpy().tolist() == [9, 6, 0]


def test_worker_attacks_return_tensorflow_for_tensorflow_input():
    tf = pytest.importorskip("tensorflow")
    out = make_worker_attack("empire", {"epsilon": 2.0}).corrupt(
        tf.constant(G.numpy()), [tf.constant(p) for p in PEERS.numpy()], 7, 2, 0
    )
    assert isinstance(out, tf.Tensor) and np.allclose(out.numpy(), -2.0 * PEERS.mean(0).numpy())


def test_server_attacks():
    model = torch.tensor([0.5, -1.0, 2.0])
    assert torch.equal(make_server_attack("reversed", {"scale": 10}).corrupt(model, 0), -10 * model)
    assert make_server_attack("silent", {}).silent and make_server_attack("silent", {}).corrupt(model, 0) is None
    assert bool(torch.isnan(make_server_attack("nan", {}).corrupt(model, 0)).all())
    rnd = make_server_attack("random", {"std": 2.0, "seed": 4}).corrupt(torch.zeros(100_000), 0)
    assert rnd.std() == pytest.approx(2.0, rel=0.02)


def test_stale_server_replays_the_model_from_delay_steps_ago():
    attack = make_server_attack("stale", {"delay": 2})
    sent = [attack.corrupt(torch.tensor([float(step)]), step).item() for step in range(6)]
    assert sent == [0.0, 0.0, 0.0, 1.0, 2.0, 3.0]
