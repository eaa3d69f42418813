"""The member-row optimizer against torch.optim on one separate tensor per member."""
import pytest
import torch

from tasks.sed.optim import make_optimizer

CONFIGS = [
    {"name": "adamw", "lr": 0.01, "weight_decay": 0.05},
    {"name": "adamw", "lr": 0.003, "weight_decay": 0.0, "betas": (0.8, 0.99), "eps": 1e-6},
    {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3},
    {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
    {"name": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.01},
]


def torch_reference(params, o):
    if o["name"] == "adamw":
        return torch.optim.AdamW(params, lr=o["lr"], betas=o.get("betas", (0.9, 0.999)), eps=o.get("eps", 1e-8),
                                 weight_decay=o["weight_decay"], foreach=False)
    return torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"], nesterov=o.get("nesterov", False),
                           weight_decay=o.get("weight_decay", 0.0), foreach=False)


def run_steps(o, steps, members=6, size=40, seed=0):
    """The same random gradients applied to random subsets of members, both ways."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randn(members, size, generator=g)
    flat = start.clone()
    rows_opt = make_optimizer(flat, o)
    leaves = [torch.nn.Parameter(start[m].clone()) for m in range(members)]
    ref = torch_reference(leaves, o)
    for t in range(steps):
        active = torch.randperm(members, generator=g)[: 1 + t % members].sort().values
        grad = torch.randn(len(active), size, generator=g)
        lr = o["lr"] * (1 - t / (2 * steps))                 # a schedule: lr changes every step
        for group in ref.param_groups:
            group["lr"] = lr
        for leaf in leaves:
            leaf.grad = None
        for i, m in enumerate(active.tolist()):
            leaves[m].grad = grad[i].clone()
        ref.step()
        before = flat.clone()
        rows_opt.step(grad, active, lr)
        idle = [m for m in range(members) if m not in active.tolist()]
        assert torch.equal(flat[idle], before[idle])          # members that sat out are untouched
    return flat, torch.stack([leaf.detach() for leaf in leaves]), rows_opt


@pytest.mark.parametrize("o", CONFIGS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_row_optimizer_matches_torch_optim_per_member(o):
    flat, reference, rows_opt = run_steps(o, steps=12)
    torch.testing.assert_close(flat, reference, rtol=1e-5, atol=1e-6)
    # every member's own step count is the number of steps it took part in
    if o["name"] == "adamw":
        steps = [rows_opt.torch_optimizer.state[p]["step"].item() for p in rows_opt.members]
        assert sum(steps) == sum(1 + t % 6 for t in range(12))


def test_all_members_path_matches_the_row_path():
    o = CONFIGS[0]
    g = torch.Generator().manual_seed(1)
    start, grads = torch.randn(4, 10, generator=g), torch.randn(5, 4, 10, generator=g)
    a, b = start.clone(), start.clone()
    opt_a, opt_b = make_optimizer(a, o), make_optimizer(b, o)
    for grad in grads:
        opt_a.step(grad)
        opt_b.step(grad, torch.arange(4))
    torch.testing.assert_close(a, b)


def test_state_dict_round_trip_continues_identically():
    o = CONFIGS[0]
    g = torch.Generator().manual_seed(2)
    start, grads = torch.randn(3, 8, generator=g), torch.randn(6, 2, 8, generator=g)
    active = [torch.tensor([0, 2]), torch.tensor([1, 2])] * 3
    straight = start.clone()
    opt = make_optimizer(straight, o)
    for grad, a in zip(grads, active):
        opt.step(grad, a)
    resumed = start.clone()
    first = make_optimizer(resumed, o)
    for grad, a in zip(grads[:3], active[:3]):
        first.step(grad, a)
    second = make_optimizer(resumed, o)
    second.load_state_dict(first.state_dict())
    for grad, a in zip(grads[3:], active[3:]):
        second.step(grad, a)
    assert torch.equal(resumed, straight)


def test_bad_optimizer_config_is_refused():
    with pytest.raises(ValueError, match="optim.name"):
        make_optimizer(torch.zeros(2, 3), {"name": "adam", "lr": 0.1})
