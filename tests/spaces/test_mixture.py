from __future__ import annotations

import pytest
import torch

from spotpatch.spaces import MixedPatch


@pytest.fixture(params=["site", "block"])
def mixed(request, random_base):
    space = random_base.space(3, granularity=request.param)
    skeleton = random_base.detector.build(3)
    return MixedPatch(skeleton, random_base.state, space, generator=torch.Generator())


def test_starts_as_the_base(mixed, random_base):
    x = torch.rand(2, 3, 128, 128)
    mixed.model.eval()
    for hard in (False, True):
        mixed.sample(0.5, hard=hard)
        with torch.no_grad():
            ours, theirs = mixed.model.backbone(x), random_base.model.backbone(x)
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_probabilities_and_expected_bytes(mixed):
    probs = mixed.probabilities()
    assert list(probs) == list(mixed.space.groups())
    for label, p in probs.items():
        assert list(p) == list(mixed.space.choices(label))
        assert sum(p.values()) == pytest.approx(1.0)
    expected = float(mixed.expected_bytes().detach())
    assert 0 < expected < 1  # uniform gates: between nothing and everything
    with torch.no_grad():
        for lg in mixed.logits:
            lg.fill_(-1e4)
            lg[-1] = 1e4  # the strongest kind everywhere: full
    full = mixed.space.full_bytes() - mixed.space.head_bytes()
    assert float(mixed.expected_bytes().detach()) == pytest.approx(full / mixed.space.full_bytes())
    assert mixed.freeze() == mixed.space.preset("full")


def test_training_moves_gates_and_deltas_only(mixed, random_base):
    before = {k: v.clone() for k, v in random_base.model.state_dict().items()}
    box = torch.tensor([[20.0, 20.0, 60.0, 70.0]])
    targets = [{"boxes": box, "labels": torch.tensor([1])}] * 2
    params = mixed.delta_parameters + mixed.logits + mixed.head_parameters
    optimizer = torch.optim.Adam(params, lr=0.05)
    mixed.model.train()
    for _ in range(3):
        mixed.sample(1.0)
        loss = sum(mixed.model([torch.rand(3, 128, 128)] * 2, targets).values())
        loss = loss + 0.5 * mixed.expected_bytes()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in random_base.model.state_dict().items())
    assert any(float(lg.detach().abs().sum()) > 0 for lg in mixed.logits)
    assert any(float(p.detach().abs().sum()) > 0 for p in mixed.delta_parameters)
    mixed.space.check_contains(mixed.freeze())


def test_deltas_are_grouped_by_the_role_of_the_tensor_they_change(mixed):
    names = {id(p): n for n, p in mixed.model.named_parameters()}
    for role in ("weight", "norm"):
        assert mixed.deltas[role], role
        for p in mixed.deltas[role]:
            module = mixed.model.get_submodule(names[id(p)].rsplit(".", 1)[0])
            assert isinstance(module, torch.nn.BatchNorm2d) == (role == "norm")
    # Low-rank factors: a rank-4 side, one (A, B) pair per layer.
    assert mixed.deltas["lora"] and len(mixed.deltas["lora"]) % 2 == 0
    assert all(4 in (p.shape[0], p.shape[1]) for p in mixed.deltas["lora"])
    assert len(mixed.delta_parameters) == sum(len(ps) for ps in mixed.deltas.values())
