"""Ensemble heads (vectorised vs per-member loop), the backbone cut, and SED's losses."""
import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from tasks.sed import losses
from tasks.sed.backbones import split_backbone
from tasks.sed.heads import EnsembleHeads, mlp_head
from tasks.sed.optim import make_optimizer


def tiny_vit(**kw):
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                             embed_dim=48, depth=2, num_heads=3, num_classes=5, **kw).eval()


@pytest.fixture(scope="module")
def vit_head():
    model = tiny_vit(init_values=0.1)          # with LayerScale, as DeiT3
    featurizer, head = split_backbone(model, "auto")
    return model, featurizer, head


def test_vit_split_reproduces_the_full_model(vit_head):
    model, featurizer, head = vit_head
    assert head["kind"] == "vit_mlp" and "ls2.gamma" in head["state"]
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        feats = featurizer(x)
        assert feats.shape == (6, 48)
        heads = EnsembleHeads(head, 3)
        logits = heads(feats)
        full = model(x)
    for m in range(3):                            # every member starts as the pretrained head
        torch.testing.assert_close(logits[m], full, rtol=1e-5, atol=1e-5)


def test_pre_logits_split_for_other_models():
    model = timm.create_model("resnet18", pretrained=False, num_classes=7).eval()
    featurizer, head = split_backbone(model, "auto")
    assert head["kind"] == "linear" and head["dim"] == 512
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(EnsembleHeads(head, 2)(featurizer(x))[1], model(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="vit_mlp"):
        split_backbone(model, "vit_mlp")


@pytest.mark.parametrize("kind", ["vit_mlp", "linear", "mlp"])
def test_vectorised_ensemble_matches_per_member_loop(vit_head, kind):
    _, _, head = vit_head
    if kind == "linear":
        head = {"kind": "linear", "dim": 48, "num_classes": 5,
                "state": {k: v for k, v in head["state"].items() if k.startswith("head.")}}
    if kind == "mlp":
        head = mlp_head(48, 64, 5, seed=1)
    heads = EnsembleHeads(head, 6, init_noise=0.05, seed=3)
    x, y = torch.randn(20, 48), torch.randint(0, 5, (20,))
    active = [0, 2, 5]
    grads = []
    for forward in (heads.forward, heads.forward_loop):
        heads.zero_grad(set_to_none=True)
        logits = forward(x, active)
        loss, _ = losses.sed_loss(logits, y, None, None, lam=0.5, lam_manual=1.0, budget=True, anchor=1)
        loss.backward()
        grads.append(heads.flat.grad.clone())
        if forward == heads.forward:
            vec_logits, vec_loss = logits.detach(), loss.detach()
        else:
            torch.testing.assert_close(logits.detach(), vec_logits, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(loss.detach(), vec_loss, rtol=1e-5, atol=1e-6)
    g_vec, g_loop = grads
    torch.testing.assert_close(g_vec, g_loop, rtol=1e-4, atol=1e-6)
    assert g_vec[active].abs().sum(1).gt(0).all() and g_vec[[1, 3, 4]].eq(0).all()
    # the training path: a leaf copy of the active rows gets the same gradient
    rows = heads.rows(active)
    loss, _ = losses.sed_loss(heads.forward_rows(x, rows), y, None, None, lam=0.5, lam_manual=1.0, budget=True,
                              anchor=1)
    loss.backward()
    torch.testing.assert_close(rows.grad, g_loop[active], rtol=1e-4, atol=1e-6)


def test_only_active_members_are_updated(vit_head):
    heads = EnsembleHeads(vit_head[2], 4)
    before = [{n: t.detach().clone() for n, t in heads.member_params(m).items()} for m in range(4)]
    opt = make_optimizer(heads.flat, {"name": "adamw", "lr": 0.1, "weight_decay": 0.1})
    active = torch.tensor([1, 3])
    rows = heads.rows(active)
    losses.ensemble_ce(heads.forward_rows(torch.randn(8, 48), rows), torch.randint(0, 5, (8,))).backward()
    opt.step(rows.grad, active)
    changed = {m for m in range(4) for n, t in heads.member_params(m).items() if not torch.equal(t, before[m][n])}
    assert changed == {1, 3}


def test_soup_and_file_round_trip(vit_head):
    heads = EnsembleHeads(vit_head[2], 3, init_noise=0.1, seed=0)
    x = torch.randn(5, 48)
    soup = heads.soup()
    for name, value in soup.items():
        torch.testing.assert_close(value[0], torch.stack([heads.member_params(m)[name] for m in range(3)]).mean(0))
    again = EnsembleHeads.from_file_dict(heads.to_file_dict())
    with torch.no_grad():
        torch.testing.assert_close(again(x), heads(x))
        torch.testing.assert_close(again.soup_forward(x), heads.soup_forward(x))


def test_a2d_with_lam_manual_zero_is_exactly_scaled_ce():
    torch.manual_seed(0)
    logits, y = torch.randn(2, 32, 5), torch.randint(0, 5, (32,))
    for lam in (0.0, 0.3, 0.5, 0.9):
        for diversity in ("a2d", "divdis", "none"):
            loss, parts = losses.sed_loss(logits, y, None, None, lam=lam, lam_manual=0.0, diversity=diversity,
                                          budget=True, label_smoothing=0.1)
            ce = F.cross_entropy(logits.reshape(-1, 5), y.repeat(2), label_smoothing=0.1)
            assert torch.equal(loss, (1 - lam) * ce)
            if diversity != "none":
                assert parts["div"] != 0.0        # the term was computed, and then weighted by 0


def test_label_smoothing_matches_the_formula():
    torch.manual_seed(1)
    z, y, eps, k = torch.randn(3, 10, 4), torch.randint(0, 4, (10,)), 0.2, 4
    target = F.one_hot(y, k).float() * (1 - eps) + eps / k
    expected = -(target * z.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(losses.ensemble_ce(z, y, eps), expected)


def test_a2d_term_matches_numpy():
    rng = np.random.default_rng(2)
    probs = torch.from_numpy(rng.dirichlet(np.ones(5), size=(3, 8)))
    anchor = 1
    p = probs.numpy()
    expected = []
    for b in range(8):
        terms = []
        for j in (0, 2):
            c = p[j, b].argmax()
            p1, p2 = p[j, b, c], p[anchor, b, c]
            terms.append(-np.log(p1 * (1 - p2) + p2 * (1 - p1) + 1e-9))
        expected.append(np.mean(terms))
    np.testing.assert_allclose(losses.a2d_disagreement(probs, anchor).numpy(), expected, rtol=1e-10)


def test_budget_weights_and_divdis():
    torch.manual_seed(3)
    z, y = torch.randn(2, 16, 5), torch.randint(0, 5, (16,))
    w = losses.budget_weights(z, y)
    ce = F.cross_entropy(z.mean(0), y, reduction="none")
    torch.testing.assert_close(w, ce / ce.mean() ** 2)
    assert not w.requires_grad
    # identical confident members share all information; independent uniform ones none
    p = F.one_hot(torch.arange(16) % 4, 4).float().unsqueeze(0).expand(2, -1, -1) * 0.97 + 0.0075
    assert losses.divdis_mutual_information(p) > 1.0
    flat = torch.full((2, 16, 4), 0.25)
    assert losses.divdis_mutual_information(flat).abs() < 1e-9
    with pytest.raises(ValueError, match="labelled"):
        losses.sed_loss(z, y, z, torch.full((16,), -1), lam=0.5, lam_manual=1.0, budget=True)
