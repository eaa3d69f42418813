"""OOD scores and AUROC against independent references (sklearn, direct numpy)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from tasks.metrics import ood


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def entropy(p):
    return -(p * np.log(p)).sum(-1)


def a2d_reference(p):
    """The SED authors' a2d_score_per_sample, written as their loops: each member a as the
    anchor, minus the A2D loss against every other member j, averaged over j, then over a."""
    m = p.shape[0]
    per_anchor = []
    for a in range(m):
        terms = []
        for j in range(m):
            if j == a:
                continue
            c = p[j].argmax(-1)
            p1 = p[j].max(-1)
            p2 = p[a][np.arange(p.shape[1]), c]
            terms.append(np.log(p1 * (1 - p2) + p2 * (1 - p1) + 1e-9))
        per_anchor.append(np.mean(terms, axis=0))
    return np.mean(per_anchor, axis=0)


@pytest.fixture
def logits():
    return torch.from_numpy(np.random.default_rng(0).normal(size=(7, 50, 10)) * 3)


def test_scores_match_direct_numpy(logits):
    z = logits.numpy()
    p = softmax(z)
    pbar = p.mean(0)
    expected = {
        "pds": p.max(0).sum(-1),
        "distinct_predictions": np.array([len(set(z[:, b].argmax(-1))) for b in range(z.shape[1])]),
        "ensemble_confidence": softmax(z.mean(0)).max(-1),
        "ensemble_entropy": entropy(pbar),
        "average_entropy": entropy(p).mean(0),
        "mutual_information": entropy(pbar) - entropy(p).mean(0),
        "energy": -np.log(np.exp(z).sum(-1)).mean(0),
        "max_logit": z.max(-1).mean(0),
        "max_mean_logit": z.mean(0).max(-1),
        "mean_member_confidence": p.max(-1).mean(0),
        "a2d_score": a2d_reference(p),
    }
    got = ood.all_scores(logits)
    assert set(got) == set(expected) == set(ood.SCORES)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name].numpy(), value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_pds_is_one_for_identical_members_and_within_1_and_m(logits):
    same = logits[:1].expand(5, -1, -1)
    np.testing.assert_allclose(ood.pds(same).numpy(), 1.0, rtol=1e-6)
    assert torch.all(ood.distinct_predictions(same) == 1)
    assert torch.allclose(ood.mutual_information(same), torch.zeros(50, dtype=torch.float64), atol=1e-6)
    values = ood.pds(logits)
    assert torch.all(values >= 1 - 1e-6) and torch.all(values <= logits.shape[0] + 1e-6)
    # members that are each certain of a different class reach M
    m = 4
    certain = torch.full((m, 1, 6), -50.0)
    for i in range(m):
        certain[i, 0, i] = 50.0
    assert ood.pds(certain).item() == pytest.approx(m)
    assert ood.distinct_predictions(certain).item() == m


def test_a2d_score_orders_agreement_below_disagreement():
    agree = torch.tensor([[[9.0, 0, 0]], [[9.0, 0, 0]], [[9.0, 0, 0]]])      # 3 members, 1 sample
    disagree = torch.tensor([[[9.0, 0, 0]], [[0, 9.0, 0]], [[0, 0, 9.0]]])
    assert ood.a2d_score(agree).item() < -5          # log(~0): no disagreement
    assert ood.a2d_score(disagree).item() > -0.01    # log(~1): certain and different
    assert ood.a2d_score(agree[:1]).item() == 0.0    # one member: nothing to disagree with


def test_scores_validate_their_input():
    with pytest.raises(ValueError):
        ood.pds(torch.zeros(10, 5))             # not [M, B, K]
    with pytest.raises(ValueError):
        ood.energy(torch.zeros(3, 4, 1))        # one class


def test_auroc_matches_sklearn_on_random_scores():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=300), rng.normal(0.7, 1.0, size=200)
    y = np.r_[np.zeros(300), np.ones(200)]
    assert ood.auroc(a, b) == pytest.approx(roc_auc_score(y, np.r_[a, b]), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=30), st.lists(st.integers(0, 5), min_size=1, max_size=30))
def test_auroc_matches_sklearn_with_ties(a, b):
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    assert ood.auroc(a, b) == pytest.approx(roc_auc_score(y, np.r_[a, b]), abs=1e-12)


def test_auroc_known_values_and_errors():
    assert ood.auroc([0, 1], [2, 3]) == 1.0
    assert ood.auroc([2, 3], [0, 1]) == 0.0
    assert ood.auroc([1, 1], [1, 1]) == 0.5
    with pytest.raises(ValueError):
        ood.auroc([], [1])
    with pytest.raises(ValueError):
        ood.auroc([np.nan], [1])
