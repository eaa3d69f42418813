"""tasks/classify/evaluate.py against a direct computation on the same models and data."""
import os

import numpy as np
import pytest
import torch

from tasks.classify.scoring import evaluate_domain, load_kind, summarise, uncertainty_of
from tasks.classify.checkpoints import MODEL_FORMAT
from tasks.data import build_set
from tasks.metrics import classification as C
from tasks.models import create_model

DCFG = {"input_size": [3, 16, 16], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "crop_pct": 1.0}


def save(tmp_path, name, model, **extra):
    path = tmp_path / f"{name}.pt"
    torch.save({"format": MODEL_FORMAT, "model": {"name": "small_cnn", "kwargs": {"width": 8},
                                                  "mimo": {"members": extra.pop("mimo", 0)}},
                "num_classes": 5, "data_config": DCFG, "state_dict": model.state_dict(), **extra}, path)
    return str(path)


@pytest.fixture
def members(tmp_path):
    torch.manual_seed(0)
    models = [create_model("small_cnn", num_classes=5, width=8).eval() for _ in range(3)]
    return models, [save(tmp_path, f"m{i}", m) for i, m in enumerate(models)]


def test_ensemble_metrics_equal_a_direct_computation(members):
    models, paths = members
    val, _ = build_set({"dataset": "digits", "split": "val"}, DCFG)
    x = torch.stack([val[i][0] for i in range(len(val))])
    y = np.array([val[i][1] for i in range(len(val))])
    with torch.no_grad():
        probs = torch.stack([m(x) for m in models]).double().softmax(-1).numpy()
    mean = probs.mean(0)
    predict = load_kind(paths, "auto", torch.device("cpu"))
    assert predict.name == "ensemble" and predict.members == 3
    arrays = evaluate_domain(predict, val, 50, torch.device("cpu"))      # several batches and a short last one
    got = summarise(arrays, bins=10)
    assert got["acc1"] == pytest.approx((mean.argmax(1) == y).mean())
    assert got["acc5"] == pytest.approx(C.top_k_accuracy(mean, y, 5))
    assert got["NLL"] == pytest.approx(C.nll(mean, y), rel=1e-6)
    assert got["brier"] == pytest.approx(C.brier(mean, y), rel=1e-6)
    ece, mce = C.calibration_errors(mean.max(1), mean.argmax(1) == y, 10)
    assert (got["ECE"], got["MCE"]) == pytest.approx((ece, mce), rel=1e-6)
    total = -(mean * np.log(mean)).sum(1)
    assert got["PRR_total_uncertainty"] == pytest.approx(C.prediction_rejection_ratio(total, mean.argmax(1) == y))
    np.testing.assert_allclose(uncertainty_of(arrays, "confidence"), -mean.max(1), rtol=1e-6)


def test_the_nll_is_exact_however_unlikely_the_label(tmp_path):
    """Members sure of a wrong class (true-class probabilities far below 1e-12): the ensemble's NLL is
    -(logsumexp_m log p_m(y) - log M) per sample, not a clamp at -log 1e-12 = 27.6."""
    torch.manual_seed(0)
    models = [create_model("small_cnn", num_classes=5, width=8).eval() for _ in range(3)]
    for k, m in enumerate(models):
        with torch.no_grad():
            last = [p for p in m.parameters() if p.dim() == 2][-1]
            last.mul_(5000.0 * (k + 1))              # logits hundreds apart: log p(y) of order -100s
    paths = [save(tmp_path, f"m{i}", m) for i, m in enumerate(models)]
    val, _ = build_set({"dataset": "digits", "split": "val"}, DCFG)
    x = torch.stack([val[i][0] for i in range(len(val))])
    y = torch.tensor([val[i][1] for i in range(len(val))])
    predict = load_kind(paths, "auto", torch.device("cpu"))
    with torch.no_grad():
        logits = predict.member_logits(x)                                           # [M, N, K], as it scores
        torch.testing.assert_close(logits, torch.stack([m(x) for m in models]), rtol=1e-4, atol=1e-2)
        logp = logits.double().log_softmax(-1)
    exact = -(logp[:, torch.arange(len(y)), y].logsumexp(0) - np.log(3)).numpy()
    assert exact.max() > 100                                                      # far past any clamp
    arrays = evaluate_domain(predict, val, len(val), torch.device("cpu"))
    np.testing.assert_allclose(arrays["nll"], exact, rtol=1e-9)
    assert summarise(arrays, bins=10)["NLL"] == pytest.approx(exact.mean(), rel=1e-9)
    from tasks.classify.training import evaluate as validate                  # the in-training validation's NLL

    assert validate(predict, val, len(val), torch.device("cpu"))["val_nll"] == pytest.approx(exact.mean(), rel=1e-9)


def test_mimo_and_dirichlet_kinds(tmp_path):
    torch.manual_seed(1)
    mimo = create_model("small_cnn", num_classes=5, width=8, mimo=2).eval()
    path = save(tmp_path, "mimo", mimo, mimo=2)
    predict = load_kind([path], "auto", torch.device("cpu"))
    assert predict.name == "mimo" and predict.members == 2
    x = torch.randn(4, 3, 16, 16)
    p, measures = predict(x)
    with torch.no_grad():
        per = mimo(x.unsqueeze(1).expand(-1, 2, -1, -1, -1)).double().softmax(-1)     # [B, M, K]
    torch.testing.assert_close(p, per.mean(1))
    assert (measures["knowledge_uncertainty"] > 0).all()
    student = create_model("small_cnn", num_classes=5, width=8).eval()
    spath = save(tmp_path, "student", student, distill={"loss": "proxy", "model_offset": 1.0})
    predict = load_kind([spath], "auto", torch.device("cpu"))
    assert predict.name == "dirichlet" and predict.offset == 1.0
    p, measures = predict(x)
    with torch.no_grad():
        alpha = student(x).double().exp() + 1.0
    torch.testing.assert_close(p, alpha / alpha.sum(-1, keepdim=True))
    torch.testing.assert_close(measures["epkl"], 4 / alpha.sum(-1))
    with pytest.raises(ValueError, match="one model"):
        load_kind([spath, spath], "dirichlet", torch.device("cpu"))


def _subset_project(tmp_path, seed=3):
    """A 6-class model and an ImageNet-A-like folder with 3 of its classes (c1, c3, c5)."""
    from PIL import Image

    torch.manual_seed(seed)
    model = create_model("small_cnn", num_classes=6, width=8).eval()
    path = tmp_path / "six.pt"
    torch.save({"format": MODEL_FORMAT, "model": {"name": "small_cnn", "kwargs": {"width": 8}, "mimo": {"members": 0}},
                "num_classes": 6, "data_config": DCFG, "state_dict": model.state_dict()}, path)
    rng = np.random.default_rng(seed)
    for c in (1, 3, 5):
        os.makedirs(tmp_path / "subset" / f"c{c}")
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "subset" / f"c{c}" / f"{i}.png")
    os.makedirs(tmp_path / "subset" / "__MACOSX")                 # an archive's leftover is not a class
    return model, str(path)


@pytest.mark.parametrize("protocol", ["restrict_logits", "argmax_before"])
def test_a_domain_of_some_classes_is_scored_by_its_protocol(tmp_path, protocol):
    """ImageNet-A / -R style: the set's class subset reaches the evaluation, which scores it as the
    config says (the distillation authors restrict the logits)."""
    import json

    import yaml

    from tasks.classify import evaluate

    model, path = _subset_project(tmp_path)
    spec = {"dataset": "class_subset", "root": str(tmp_path / "subset"), "classes": [f"c{i}" for i in range(6)],
            "transform": {"recipe": "resize_center_crop", "resize": 16, "size": 16}}
    cfg = {"models": [path], "kind": "single", "device": "cpu", "class_subset_protocol": protocol,
           "results_path": str(tmp_path / "out.json"),
           "data": {"input_size": [3, 16, 16], "mean": [0.5] * 3, "std": [0.5] * 3,
                    "in_distribution": spec, "domains": {}}}
    (tmp_path / "ev.yaml").write_text(yaml.safe_dump(cfg))
    evaluate.main(["--config", str(tmp_path / "ev.yaml")])
    got = json.load(open(tmp_path / "out.json"))
    assert got["class_subset_protocol"] == protocol and got["results"]["in_distribution"]["classes"] == 3
    ds, subset = build_set(spec, DCFG)
    assert subset == [1, 3, 5] and len(ds) == 24
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor([ds[i][1] for i in range(len(ds))])
    with torch.no_grad():
        logits = model(x)
    if protocol == "restrict_logits":
        expected = (torch.tensor(subset)[logits[:, subset].argmax(-1)] == y).float().mean().item()
    else:
        expected = (logits.argmax(-1) == y).float().mean().item()
    assert got["results"]["in_distribution"]["acc1"] == pytest.approx(expected)


def test_restricted_logits_on_a_known_example():
    """Three of six classes: the subset's accuracy is over those classes' logits only."""
    class Fixed:
        kind, members = "single", 1

        def __call__(self, x, classes=None):
            logits = x.double()
            probs = logits.softmax(-1) if classes is None else logits[..., classes].softmax(-1)
            return probs, {m: torch.zeros(len(x), dtype=torch.float64) for m in ("confidence", "total_uncertainty",
                                                                                 "data_uncertainty",
                                                                                 "knowledge_uncertainty", "epkl")}
    # each "image" is its own logits; the largest logit overall is class 0 (outside the subset) for half
    logits = torch.tensor([[9., 5, 0, 0, 0, 0], [9., 0, 0, 5, 0, 0], [0., 5, 0, 0, 0, 0], [0., 0, 0, 0, 0, 5]])
    labels = [1, 1, 1, 5]
    data = [(logits[i], labels[i], i) for i in range(4)]
    restricted = summarise(evaluate_domain(Fixed(), data, 2, torch.device("cpu"), subset=[1, 3, 5]), 10)
    before = summarise(evaluate_domain(Fixed(), data, 2, torch.device("cpu"), subset=[1, 3, 5],
                                       protocol="argmax_before"), 10)
    assert restricted["acc1"] == pytest.approx(0.75)       # rows 1, 3, 4 right over classes 1, 3, 5
    assert before["acc1"] == pytest.approx(0.5)            # rows 1, 2 predict class 0: wrong


def test_an_undefined_rejection_ratio_is_null_with_a_reason_and_the_evaluation_goes_on():
    class AllWrong:
        def __call__(self, x, classes=None):
            p = torch.tensor([[0.9, 0.1]], dtype=torch.float64).expand(len(x), 2)
            return p, {m: torch.rand(len(x), dtype=torch.float64) for m in ("confidence", "total_uncertainty",
                                                                           "data_uncertainty", "knowledge_uncertainty",
                                                                           "epkl")}
    data = [(torch.zeros(2), 1, i) for i in range(5)]
    got = summarise(evaluate_domain(AllWrong(), data, 2, torch.device("cpu")), 10)
    assert got["acc1"] == 0.0 and got["PRR_total_uncertainty"] is None
    assert got["PRR_undefined"].startswith("every prediction is wrong")
    one = summarise(evaluate_domain(AllWrong(), data[:1], 2, torch.device("cpu")), 10)
    assert one["PRR_confidence"] is None


def test_the_authors_definitions_are_options_of_the_kinds(tmp_path):
    """MIMO with averaged logits read as a Dirichlet, and a student scored by softmax(z): the
    distillation authors' mimo_predictions / single_model_predictions, computed here as they do."""
    from scipy.special import digamma

    torch.manual_seed(2)
    x = torch.randn(6, 3, 16, 16)
    mimo = create_model("small_cnn", num_classes=5, width=8, mimo=3).eval()
    kind = load_kind([save(tmp_path, "mimo", mimo, mimo=3)], "auto", torch.device("cpu"), {"mimo_combine": "logits"})
    assert kind.describe() == {"kind": "mimo", "members": 3, "mimo_combine": "logits"}
    p, measures = kind(x)
    with torch.no_grad():
        z = mimo(x.unsqueeze(1).expand(-1, 3, -1, -1, -1)).double().mean(1).numpy()     # [B, K]
    alphas = np.exp(z)                                   # the authors' get_model_uncertainty_values, offset 0
    alpha0 = alphas.sum(1, keepdims=True)
    probs = alphas / alpha0
    eoe = -(probs * np.log(probs + 1e-10)).sum(1)
    exe = -(probs * (digamma(alphas + 1) - digamma(alpha0 + 1))).sum(1)
    np.testing.assert_allclose(p.numpy(), torch.from_numpy(z).softmax(-1).numpy(), rtol=1e-10)
    np.testing.assert_allclose(measures["total_uncertainty"].numpy(), eoe, rtol=1e-6)
    np.testing.assert_allclose(measures["knowledge_uncertainty"].numpy(), eoe - exe, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(measures["epkl"].numpy(), 4 / alpha0[:, 0], rtol=1e-10)

    student = create_model("small_cnn", num_classes=5, width=8).eval()
    spath = save(tmp_path, "student", student, distill={"loss": "proxy", "model_offset": 1.0})
    kind = load_kind([spath], "auto", torch.device("cpu"), {"dirichlet_probs": "softmax"})
    p, _ = kind(x, torch.tensor([0, 2, 4]))
    with torch.no_grad():
        torch.testing.assert_close(p, student(x).double()[:, [0, 2, 4]].softmax(-1))
    with pytest.raises(ValueError, match="dirichlet_probs must be one of"):
        load_kind([spath], "auto", torch.device("cpu"), {"dirichlet_probs": "mean"})


def test_a_new_model_kind_is_one_registered_class(tmp_path, members):
    """A kind the project does not have (a temperature-scaled ensemble) in one class: evaluate
    reads models with it and names it in eval_metrics.json."""
    import json

    import yaml

    from tasks.classify import evaluate
    from tasks.classify.kinds import KINDS, register_kind
    from tasks.classify.kinds.networks import Ensemble

    class Tempered(Ensemble):
        name = "test_tempered"
        options = {"temperature": (2.0,)}

        def member_logits(self, x):
            return self.net(x) / self.choices["temperature"]

    register_kind(Tempered)
    try:
        models, paths = members
        cfg = {"models": paths, "kind": "test_tempered", "device": "cpu", "results_path": str(tmp_path / "t.json"),
               "data": {"input_size": [3, 16, 16], "mean": [0.5] * 3, "std": [0.5] * 3,
                        "in_distribution": {"dataset": "digits", "split": "val"}, "domains": {}}}
        (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
        evaluate.main(["--config", str(tmp_path / "t.yaml")])
        got = json.load(open(tmp_path / "t.json"))
        assert got["kind"] == "test_tempered" and got["temperature"] == 2.0 and got["members"] == 3
        val, _ = build_set({"dataset": "digits", "split": "val"}, DCFG)
        x = torch.stack([val[i][0] for i in range(len(val))])
        y = np.array([val[i][1] for i in range(len(val))])
        with torch.no_grad():
            mean = (torch.stack([m(x) for m in models]).double() / 2).softmax(-1).mean(0).numpy()
        assert got["results"]["in_distribution"]["NLL"] == pytest.approx(C.nll(mean, y), rel=1e-6)
    finally:
        KINDS.pop("test_tempered", None)


def test_ood_auroc_also_against_the_in_distribution_samples_of_the_ood_sets_classes(tmp_path):
    import json

    import yaml

    from tasks.classify import evaluate
    from tasks.metrics.ood import auroc

    model, path = _subset_project(tmp_path)
    rng = np.random.default_rng(9)
    from PIL import Image
    for c in range(6):
        os.makedirs(tmp_path / "val" / f"c{c}")
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "val" / f"c{c}" / f"{i}.png")
    t = {"recipe": "resize_center_crop", "resize": 16, "size": 16}
    names = [f"c{i}" for i in range(6)]
    cfg = {"models": [path], "kind": "single", "device": "cpu", "results_path": str(tmp_path / "o.json"),
           "data": {"input_size": [3, 16, 16], "mean": [0.5] * 3, "std": [0.5] * 3,
                    "in_distribution": {"dataset": "image_folder", "root": str(tmp_path / "val"), "classes": names,
                                        "transform": t},
                    "domains": {"sub": {"dataset": "class_subset", "root": str(tmp_path / "subset"), "classes": names,
                                        "transform": t}},
                    "ood": ["sub"]}}
    (tmp_path / "o.yaml").write_text(yaml.safe_dump(cfg))
    evaluate.main(["--config", str(tmp_path / "o.yaml")])
    got = json.load(open(tmp_path / "o.json"))["results"]["ood/sub"]
    ind, _ = build_set(cfg["data"]["in_distribution"], DCFG)
    sub, _ = build_set(cfg["data"]["domains"]["sub"], DCFG)

    def entropy(ds):
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        with torch.no_grad():
            p = model(x).double().softmax(-1)
        return -(p * p.log()).sum(-1).numpy(), np.array([ds[i][1] for i in range(len(ds))])

    h_in, y_in = entropy(ind)
    h_out, _ = entropy(sub)
    assert got["AUROC_total_uncertainty"] == pytest.approx(auroc(h_in, h_out))
    assert got["AUROC_masked_total_uncertainty"] == pytest.approx(auroc(h_in[np.isin(y_in, [1, 3, 5])], h_out))
