"""Skipping of bad updates cannot stall training; a skipped update leaves weights and Adam's state untouched; the
weight average is the textbook EMA and swaps in and out without disturbing training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vae_cli.training.updates import UpdateGuard, WeightAverage


def toy(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    return model, torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)


def backward(model: nn.Module, scale: float = 1.0) -> torch.Tensor:
    x = torch.linspace(-1, 1, 32).view(8, 4)
    loss = scale * model(x).pow(2).mean()
    model.zero_grad(set_to_none=True)
    loss.backward()
    return nn.utils.get_total_norm([p.grad for p in model.parameters()])


def snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    state = [t.clone() for s in optimizer.state.values() for t in s.values()]
    return [p.detach().clone() for p in model.parameters()] + state


def test_a_skipped_update_changes_nothing_and_a_normal_one_is_plain_adam():
    model, optimizer = toy()
    reference, ref_opt = toy()
    guard = UpdateGuard(threshold=1e3, max_in_a_row=5, optimizer=optimizer, device=torch.device("cpu"))
    for _ in range(3):  # below the threshold: exactly Adam
        guard.decide(list(model.parameters()), backward(model))
        guard.step()
        backward(reference)
        ref_opt.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters(), strict=True))
    before = snapshot(model, optimizer)
    guard.decide(list(model.parameters()), backward(model, scale=1e8))  # a huge gradient
    guard.step()
    after = snapshot(model, optimizer)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))  # weights, moments and step count
    assert guard.skipped.item() == 1 and guard.in_a_row.item() == 1


def test_a_threshold_that_every_update_exceeds_cannot_stall_training():
    model, optimizer = toy()
    guard = UpdateGuard(threshold=1e-9, max_in_a_row=4, optimizer=optimizer, device=torch.device("cpu"))
    start = [p.detach().clone() for p in model.parameters()]
    losses = []
    for _ in range(50):
        norm = backward(model)
        losses.append(model(torch.linspace(-1, 1, 32).view(8, 4)).pow(2).mean().item())
        guard.decide(list(model.parameters()), norm)
        guard.step()
    # Every 5th update goes through (clipped to the threshold): 10 applied, 40 skipped.
    assert guard.skipped.item() == 40
    step_counts = {int(s["step"].item()) for s in optimizer.state.values()}
    assert step_counts == {10}
    assert any(not torch.equal(a, p) for a, p in zip(start, model.parameters(), strict=True))
    assert losses[-1] < losses[0]  # Adam's steps are scale-free: clipped updates still train


def test_the_guard_state_round_trips():
    model, optimizer = toy()
    guard = UpdateGuard(threshold=1e-9, max_in_a_row=3, optimizer=optimizer, device=torch.device("cpu"))
    for _ in range(2):
        guard.decide(list(model.parameters()), backward(model))
        guard.step()
    other = UpdateGuard(threshold=1e-9, max_in_a_row=3, optimizer=toy()[1], device=torch.device("cpu"))
    other.load_state_dict(guard.state_dict())
    assert other.in_a_row.item() == 2 and other.skipped.item() == 2


def test_weight_average_is_the_warmed_up_exponential_moving_average_and_swaps_cleanly():
    model, optimizer = toy()
    ema = WeightAverage(model, decay=0.9)
    expected = [p.detach().clone() for p in model.parameters()]
    initial_share = 1.0
    for n in range(1, 101):  # the warm-up (1 + n) / (10 + n) reaches 0.9 at n = 81: both regimes
        backward(model)
        optimizer.step()
        ema.update()
        d = min(0.9, (1 + n) / (10 + n))
        initial_share *= d
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, model.parameters(), strict=True)]
    assert all(torch.allclose(a, e, atol=1e-6) for a, e in zip(ema.average, expected, strict=True))
    assert initial_share < 1e-7  # a plain 0.9 average would still hold 0.9**100 = 3e-5 of the initial weights
    trained = [p.detach().clone() for p in model.parameters()]
    with ema.swapped():
        assert all(torch.allclose(p, e, atol=1e-6) for p, e in zip(model.parameters(), expected, strict=True))
        with ema.swapped():  # nested: still the average, restored once
            pass
    assert all(torch.equal(p, t) for p, t in zip(model.parameters(), trained, strict=True))
    state = ema.averaged_state_dict()
    assert torch.allclose(state["0.weight"], expected[0], atol=1e-6)
    fresh = WeightAverage(toy(1)[0], decay=0.9)
    fresh.load_averaged(state, updates=ema.updates.item())
    assert torch.allclose(fresh.average[0], expected[0], atol=1e-6) and fresh.updates.item() == 100


def test_clipping_then_the_guard_does_not_shrink_an_update_twice():
    model, optimizer = toy()
    guard = UpdateGuard(threshold=5.0, max_in_a_row=0, optimizer=optimizer, device=torch.device("cpu"))
    norm = backward(model, scale=1e4)
    nn.utils.clip_grads_with_norm_(list(model.parameters()), 10.0, norm)  # grad_clip=10 first
    guard.decide(list(model.parameters()), norm, clipped_to=10.0)  # max_in_a_row=0: never skip, clip to 5
    after = nn.utils.get_total_norm([p.grad for p in model.parameters()])
    assert after.item() == pytest.approx(5.0, rel=1e-4)
