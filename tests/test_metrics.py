"""Classification, calibration and uncertainty metrics against their formulas and scikit-learn."""
import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, top_k_accuracy_score

from tasks.metrics import classification as C
from tasks.metrics import uncertainty as U


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(size=(500, 7)) * 2)
    labels = rng.integers(0, 7, 500)
    return probs, labels


def test_accuracy_nll_brier_match_sklearn_and_the_formulas(predictions):
    p, y = predictions
    for k in (1, 2, 5):
        assert C.top_k_accuracy(p, y, k) == pytest.approx(top_k_accuracy_score(y, p, k=k, labels=range(7)))
    assert C.nll(p, y) == pytest.approx(log_loss(y, p, labels=range(7)))
    onehot = np.eye(7)[y]
    assert C.brier(p, y) == pytest.approx(((p - onehot) ** 2).sum(1).mean())
    assert C.brier(onehot, y) == 0.0 and C.nll(onehot, y) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError):
        C.nll(p, y + 7)                               # labels out of range
    with pytest.raises(ValueError):
        C.brier(p * 2, y)                             # not probabilities


def test_calibration_errors_on_known_values_and_a_calibrated_predictor():
    conf = np.array([0.05, 0.15, 0.15, 0.95, 1.0])
    correct = np.array([0, 1, 0, 1, 1])
    # bins (10): [0, .1): {0.05 / wrong}: gap .05;  [.1, .2): {.15, .15 / 1 of 2}: gap .35;  [.9, 1]: {.95, 1 / 2 of 2}: gap .025
    ece, mce = C.calibration_errors(conf, correct, bins=10)
    assert ece == pytest.approx((1 * 0.05 + 2 * 0.35 + 2 * 0.025) / 5)
    assert mce == pytest.approx(0.35)
    rng = np.random.default_rng(1)
    c = rng.uniform(0, 1, 400_000)
    hits = rng.uniform(0, 1, 400_000) < c             # right exactly as often as it says
    ece, mce = C.calibration_errors(c, hits, bins=15)
    assert ece < 0.005 and mce < 0.01
    ece_bad, _ = C.calibration_errors(np.full(1000, 0.9), np.zeros(1000), bins=10)
    assert ece_bad == pytest.approx(0.9)


def test_prediction_rejection_ratio():
    rng = np.random.default_rng(2)
    correct = rng.uniform(size=2000) < 0.7
    oracle = (~correct).astype(float) + rng.uniform(0, 0.1, 2000)     # every error above every hit
    assert C.prediction_rejection_ratio(oracle, correct) == pytest.approx(1.0)
    assert C.prediction_rejection_ratio(-oracle, correct) < -0.9      # the worst order
    randoms = [C.prediction_rejection_ratio(rng.uniform(size=2000), correct) for _ in range(20)]
    assert abs(np.mean(randoms)) < 0.05
    assert C.prediction_rejection_ratio(np.zeros(2000), correct) == pytest.approx(0.0, abs=1e-9)   # all tied
    assert np.isnan(C.prediction_rejection_ratio(rng.uniform(size=10), np.ones(10, bool)))


def test_ensemble_uncertainty_decomposes_and_matches_loops():
    rng = np.random.default_rng(3)
    probs = softmax(rng.normal(size=(5, 40, 6)) * 2)
    got = {k: v.numpy() for k, v in U.ensemble_uncertainty(torch.from_numpy(probs)).items()}
    mean = probs.mean(0)

    def H(p):
        return -(p * np.log(p)).sum(-1)
    np.testing.assert_allclose(got["total_uncertainty"], H(mean))
    np.testing.assert_allclose(got["data_uncertainty"], H(probs).mean(0))
    np.testing.assert_allclose(got["total_uncertainty"], got["data_uncertainty"] + got["knowledge_uncertainty"])
    assert (got["knowledge_uncertainty"] >= -1e-12).all()
    kl = [(probs[i] * (np.log(probs[i]) - np.log(probs[j]))).sum(-1) for i in range(5) for j in range(5) if i != j]
    np.testing.assert_allclose(got["epkl"], np.mean(kl, axis=0), rtol=1e-10)
    np.testing.assert_allclose(got["confidence"], mean.max(-1))
    same = U.ensemble_uncertainty(torch.from_numpy(np.repeat(probs[:1], 4, axis=0)))
    assert torch.allclose(same["epkl"], torch.zeros(40, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(same["knowledge_uncertainty"], torch.zeros(40, dtype=torch.float64), atol=1e-12)


def test_dirichlet_uncertainty():
    rng = np.random.default_rng(4)
    p = softmax(rng.normal(size=(30, 8)))
    sharp = U.dirichlet_uncertainty(torch.from_numpy(p * 1e6))         # alpha0 = 1e6: no knowledge uncertainty
    assert sharp["knowledge_uncertainty"].abs().max() < 1e-4
    np.testing.assert_allclose(sharp["epkl"].numpy(), 7 / 1e6)
    flat = U.dirichlet_uncertainty(torch.from_numpy(p * 2.0))
    assert (flat["knowledge_uncertainty"] > sharp["knowledge_uncertainty"] + 0.1).all()
    for out in (sharp, flat):
        torch.testing.assert_close(out["total_uncertainty"], out["data_uncertainty"] + out["knowledge_uncertainty"])
    # data uncertainty of Dir(alpha): E[H[pi]] = psi(alpha0 + 1) - sum_k p_k psi(alpha_k + 1), by Monte Carlo
    alpha = np.array([2.0, 3.0, 0.5])
    samples = rng.dirichlet(alpha, size=200_000)
    mc = (-(samples * np.log(np.clip(samples, 1e-300, None))).sum(1)).mean()
    got = U.dirichlet_uncertainty(torch.from_numpy(alpha[None]))["data_uncertainty"].item()
    assert got == pytest.approx(mc, abs=5e-3)
    with pytest.raises(ValueError):
        U.dirichlet_uncertainty(torch.tensor([[1.0, 0.0]]))


def test_proxy_dirichlet_targets():
    rng = np.random.default_rng(5)
    probs = torch.from_numpy(softmax(rng.normal(size=(6, 20, 5))))
    alpha = U.proxy_dirichlet(probs)
    torch.testing.assert_close(alpha / alpha.sum(-1, keepdim=True), probs.mean(0))    # mean preserved
    agree = U.proxy_dirichlet(probs[:1].repeat(6, 1, 1))
    assert (agree.sum(-1) > 1e6).all()                # members agree: a very sharp Dirichlet
    assert (alpha.sum(-1) < agree.sum(-1)).all()


def test_prediction_rejection_ratio_is_nan_with_a_reason_in_the_degenerate_cases():
    u = np.random.default_rng(4).uniform(size=10)
    for correct, why in ((np.zeros(10, bool), "every prediction is wrong"),
                         (np.ones(10, bool), "every prediction is right"),
                         (np.array([False]), "every prediction is wrong"),
                         (np.array([True]), "every prediction is right")):
        assert np.isnan(C.prediction_rejection_ratio(u[:len(correct)], correct))       # never ZeroDivisionError
        assert C.prediction_rejection_undefined(correct).startswith(why)
    assert C.prediction_rejection_undefined(np.array([True, False])) is None


def test_a_confidence_of_one_goes_to_the_last_bin_or_to_its_own_as_the_authors_code_does():
    conf = np.array([0.92, 0.94, 1.0, 1.0])
    correct = np.array([0, 0, 1, 1])
    ece, mce = C.calibration_errors(conf, correct, bins=10)                 # one bin [0.9, 1]: conf .965, acc .5
    assert (ece, mce) == pytest.approx((0.465, 0.465))
    ece, mce = C.calibration_errors(conf, correct, bins=10, confidence_one="own_bin")
    assert (ece, mce) == pytest.approx((0.5 * 0.93, 0.93))                 # [0.9, 1): .93 vs 0;  {1}: exact
    # the distillation authors' get_calibration_errors: np.digitize over np.linspace(0, 1, bins + 1)
    idx = np.digitize(conf, np.linspace(0, 1, 11))
    gaps = {b: abs(conf[idx == b].mean() - correct[idx == b].mean()) for b in np.unique(idx)}
    assert mce == pytest.approx(max(gaps.values()))
    with pytest.raises(ValueError, match="confidence_one"):
        C.calibration_errors(conf, correct, confidence_one="first_bin")


def test_ood_scores_are_float64_so_near_identical_members_keep_their_order():
    """Members a hair apart: the mutual information is a difference of two nearly equal
    entropies; in float32 it is noise (and negative), so every score is computed in float64."""
    from tasks.metrics.ood import mutual_information

    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 2000, 10, generator=g) * 3
    scale = torch.linspace(1e-4, 1e-2, 2000).view(1, -1, 1)               # sample i: members spread by scale_i
    logits = (base + scale * torch.randn(5, 2000, 10, generator=g)).float()
    mi = mutual_information(logits)
    assert mi.dtype == torch.float64 and (mi >= -1e-15).all()
    exact = mutual_information(logits.double())
    assert torch.equal(mi, exact)


def test_sample_scores_are_the_per_sample_terms_of_the_mean_metrics():
    """What an evaluation computes batch by batch on the model's device (from log-probabilities) has
    for its means exactly the documented metrics."""
    import torch

    from tasks.metrics.classification import brier, nll, sample_scores, top_k_accuracy

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(200, 7)) * 3
    labels = rng.integers(0, 7, size=200)
    log_probs = torch.log_softmax(torch.from_numpy(logits), -1)
    probs = log_probs.exp().numpy()
    s = sample_scores(log_probs, torch.from_numpy(labels), k=5)
    assert s["correct"].double().mean().item() == pytest.approx(top_k_accuracy(probs, labels, 1), abs=1e-12)
    assert s["topk"].double().mean().item() == pytest.approx(top_k_accuracy(probs, labels, 5), abs=1e-12)
    assert s["nll"].mean().item() == pytest.approx(nll(probs, labels), rel=1e-12)
    assert s["brier"].mean().item() == pytest.approx(brier(probs, labels), rel=1e-12)
    np.testing.assert_allclose(s["confidence"].numpy(), probs.max(1), rtol=1e-12)
    tiny = torch.tensor([[0.0, -800.0]], dtype=torch.float64)          # p(y) = e^-800: exact, not infinite
    assert sample_scores(tiny, torch.tensor([1]))["nll"].item() == pytest.approx(800.0)
    with pytest.raises(ValueError, match="expected log_probs"):
        sample_scores(log_probs[0], torch.from_numpy(labels))
