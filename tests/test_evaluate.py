"""tasks/classify/evaluate.py against a direct computation on the same models and data."""
import numpy as np
import pytest
import torch

from tasks.classify.evaluate import Predictor, evaluate_domain, summarise, uncertainty_of
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
    predict = Predictor(paths, "auto", torch.device("cpu"))
    assert predict.kind == "ensemble" and predict.members == 3
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


def test_mimo_and_dirichlet_kinds(tmp_path):
    torch.manual_seed(1)
    mimo = create_model("small_cnn", num_classes=5, width=8, mimo=2).eval()
    path = save(tmp_path, "mimo", mimo, mimo=2)
    predict = Predictor([path], "auto", torch.device("cpu"))
    assert predict.kind == "mimo" and predict.members == 2
    x = torch.randn(4, 3, 16, 16)
    p, measures = predict(x)
    with torch.no_grad():
        per = mimo(x.unsqueeze(1).expand(-1, 2, -1, -1, -1)).double().softmax(-1)     # [B, M, K]
    torch.testing.assert_close(p, per.mean(1))
    assert (measures["knowledge_uncertainty"] > 0).all()
    student = create_model("small_cnn", num_classes=5, width=8).eval()
    spath = save(tmp_path, "student", student, distill={"loss": "proxy", "model_offset": 1.0})
    predict = Predictor([spath], "auto", torch.device("cpu"))
    assert predict.kind == "dirichlet" and predict.offset == 1.0
    p, measures = predict(x)
    with torch.no_grad():
        alpha = student(x).double().exp() + 1.0
    torch.testing.assert_close(p, alpha / alpha.sum(-1, keepdim=True))
    torch.testing.assert_close(measures["epkl"], 4 / alpha.sum(-1))
    with pytest.raises(ValueError, match="one model"):
        Predictor([spath, spath], "dirichlet", torch.device("cpu"))
