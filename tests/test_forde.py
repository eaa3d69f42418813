"""tasks/forde: the repulsion against a direct implementation, the joint members against separate
networks, the PCA, the deep-ensemble baseline against independent training, resume, several
processes, mixed precision, and the sheet end to end."""
import copy
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import REPO, copy_project, run_project_sheet, set_nested
from tasks.forde.compute_pca import pca_of, second_moment
from tasks.forde.pca import load_pca
from tasks.forde.repulsion import repulsion, repulsion_reference
from tasks.models import create_model
from tasks.models.joint import JointEnsemble

SCRIPT = os.path.join(REPO, "tasks", "forde", "train_forde.py")


@pytest.mark.parametrize("members", [2, 3, 4])
@pytest.mark.parametrize("scaled", [False, True])
def test_repulsion_equals_the_direct_per_member_per_pair_sum(members, scaled):
    torch.manual_seed(members)
    grads = torch.randn(members, 5, 6, dtype=torch.float64, requires_grad=True)
    kw = {}
    if scaled:
        kw = {"eigenvectors": torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))[0],
              "scales": torch.rand(6, dtype=torch.float64) * 5}
    value, _ = repulsion(grads, 7, **kw)
    expected = repulsion_reference(grads, 7, **kw)
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    (got,) = torch.autograd.grad(value, grads)
    (want,) = torch.autograd.grad(expected, grads)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-9)
    assert got.abs().max() > 1e-4                                   # a gradient that does something


def test_bandwidth_is_the_median_over_members_per_sample():
    torch.manual_seed(0)
    m, n = 4, 3
    grads = torch.randn(m, n, 5, dtype=torch.float64)
    _, bandwidth = repulsion(grads)
    u = (grads / grads.norm(dim=-1, keepdim=True)).numpy()
    sq = ((u[:, None] - u[None]) ** 2).sum(-1)                      # [M, K, N]
    expected = np.median(sq, axis=0) / math.log(m) + 1e-12          # numpy: mean of the 2 middle values
    assert float(bandwidth) == pytest.approx(expected.mean(), rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 members"):
        repulsion(grads[:1])


def test_members_with_equal_input_gradients_feel_no_push():
    g = torch.randn(1, 4, 6).repeat(3, 1, 1).requires_grad_(True)
    value, _ = repulsion(g)
    (grad,) = torch.autograd.grad(value, g)
    assert float(grad.abs().max()) < 1e-6


def _separate_and_joint(model_name, members=3, **kwargs):
    torch.manual_seed(0)
    nets = [create_model(model_name, 7, **kwargs) for _ in range(members)]
    for net in nets:                   # random weights everywhere (the classifier's too) and batch statistics
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.2)
        net.train()
    return nets, JointEnsemble([copy.deepcopy(n) for n in nets]).train()


@pytest.mark.parametrize("model_name,kwargs", [("small_cnn", {"width": 4}), ("cifar_resnet18", {"width": 4}),
                                               ("preact_resnet18", {"width": 4}),
                                               ("cifar_resnet18", {"width": 4, "padding": "same"}),
                                               ("preact_resnet18", {"width": 4, "padding": "same"})])
def test_joint_members_equal_separate_networks(model_name, kwargs):
    """Outputs, input gradients and parameter gradients of the double backprop, batch norm in training mode."""
    nets, joint = _separate_and_joint(model_name, **kwargs)
    x, y = torch.randn(6, 3, 16, 16), torch.randint(0, 7, (6,))
    xm = x.unsqueeze(0).expand(3, *x.shape).clone().requires_grad_(True)
    out = joint(xm)
    (g,) = torch.autograd.grad(out.gather(-1, y.view(1, -1, 1).expand(3, -1, 1)).sum(), xm, create_graph=True)
    ((g ** 2).sum() + out.logsumexp(-1).sum()).backward()
    grads = dict(joint.net.named_parameters())
    for m, net in enumerate(nets):
        xi = x.clone().requires_grad_(True)
        o = net(xi)
        (gi,) = torch.autograd.grad(o.gather(-1, y.view(-1, 1)).sum(), xi, create_graph=True)
        ((gi ** 2).sum() + o.logsumexp(-1).sum()).backward()
        torch.testing.assert_close(out[m], o, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(g[m], gi, rtol=1e-4, atol=1e-6)
        for name, p in net.named_parameters():
            mine = grads[name].grad.chunk(3)[m].reshape(p.shape)
            torch.testing.assert_close(mine, p.grad, rtol=1e-3, atol=1e-5 * float(p.grad.abs().max()) + 1e-7)
    # and each member comes back out as a network of its own
    back = joint.member(1, create_model(model_name, 7, **kwargs))
    for name, value in nets[1].state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], value)


@pytest.mark.parametrize("members", [2, 4])
@pytest.mark.parametrize("model_name", ["small_cnn", "preact_resnet18"])
def test_every_way_of_walking_the_members_gives_the_same_step(members, model_name, pca_file):
    """forde.members: joint, loop and vmap give the same loss, parameter gradients and batch-norm
    statistics (training mode: the statistics are the batch's, and the running ones move)."""
    from tasks.forde.train_forde import FordeObjective

    cfg = yaml.safe_load(open(os.path.join(REPO, "default_configs", "forde", "train.yaml")))
    cfg["model"]["joint_members"] = members
    cfg["forde"]["pca_path"] = pca_file
    torch.manual_seed(0)
    joint = create_model(model_name, 10, joint_members=members, width=4).train()
    for p in joint.parameters():          # random weights everywhere (the classifier's too)
        torch.nn.init.normal_(p, std=0.2)
    x, y = torch.randn(12, 3, 16, 16), torch.randint(0, 10, (12,))
    steps = {}
    for way in ("joint", "loop", "vmap"):
        cfg["forde"]["members"] = way
        net = copy.deepcopy(joint)
        loss, _, _, logged = FordeObjective(cfg, torch.device("cpu"))(net, x, y)
        loss.backward()
        steps[way] = (loss.detach(), {n: p.grad for n, p in net.named_parameters()}, dict(net.named_buffers()),
                      logged["repulsion"])
    loss, grads, buffers, repelled = steps["joint"]
    assert float(repelled) != 0.0
    for way in ("loop", "vmap"):
        torch.testing.assert_close(steps[way][0], loss, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(steps[way][3], repelled, rtol=1e-5, atol=1e-5)
        for name, grad in grads.items():
            torch.testing.assert_close(steps[way][1][name], grad, rtol=1e-5,
                                       atol=1e-5 * float(grad.abs().max()) + 1e-7, msg=f"{way}: {name}")
        for name, buffer in buffers.items():
            torch.testing.assert_close(steps[way][2][name], buffer, rtol=1e-5, atol=1e-6, msg=f"{way}: {name}")
            if buffer.dim() == 0:
                assert int(buffer) == 1                       # one step counted once, whatever the way


def test_auto_takes_the_joint_network_on_a_cpu_while_its_feature_maps_are_small(pca_file):
    from tasks.forde.train_forde import CPU_JOINT_MAX_BYTES, FordeObjective, members_way

    small = create_model("small_cnn", 10, joint_members=10, width=8)        # forde.csv's: 10 x 8 x 16 x 16 x 64
    assert small.largest_feature_map((64, 3, 16, 16)) == 10 * 8 * 16 * 16 * 64
    assert 4 * small.largest_feature_map((64, 3, 16, 16)) <= CPU_JOINT_MAX_BYTES
    assert members_way("auto", "cpu", small, (64, 3, 16, 16)) == "joint"
    assert members_way(None, "cpu", small, (64, 3, 64, 64)) == "loop"          # 16x the pixels
    assert members_way("auto", "cuda", small, (64, 3, 64, 64)) == "joint"
    assert members_way("vmap", "cpu") == "vmap"
    # the objective decides at its first batch, and the saved model records what it took
    cfg = yaml.safe_load(open(os.path.join(REPO, "default_configs", "forde", "train.yaml")))
    cfg["model"]["joint_members"], cfg["forde"]["pca_path"] = 2, pca_file
    objective = FordeObjective(cfg, torch.device("cpu"))
    assert objective.metadata["members"] == "auto"
    objective(create_model("small_cnn", 10, joint_members=2, width=4), torch.randn(8, 3, 16, 16),
              torch.randint(0, 10, (8,)))
    assert objective.metadata["members"] == "joint"


def test_a_wrong_way_is_refused_with_the_ways_named():
    from tasks.forde.train_forde import members_way

    with pytest.raises(ValueError, match="forde.members must be auto or one of"):
        members_way("loops", "cpu")
    joint = create_model("small_cnn", 10, joint_members=2, width=4)
    with pytest.raises(ValueError, match="way must be one of"):
        joint(torch.randn(2, 3, 16, 16), way="grouped")


def test_pca_recovers_a_known_second_moment_streaming_over_batches():
    rng = np.random.default_rng(0)
    d = 6
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    scales = np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.1])
    x = rng.normal(size=(20000, d)) @ np.diag(scales) @ q.T        # second moment q diag(scales^2) q^T
    batches = [(torch.from_numpy(x[i:i + 999]).float(),) for i in range(0, len(x), 999)]
    moment, n = second_moment(batches, d)
    assert n == len(x)
    exact = x.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(moment, exact.T @ exact, rtol=1e-9)        # float64 accumulation: exact sums
    vectors, lengths = pca_of(moment, n)
    np.testing.assert_allclose(lengths, scales, rtol=0.03)                  # sampling error only
    for k in range(3):                                                      # well-separated directions
        assert abs(float(vectors[:, k] @ q[:, k])) > 0.999
    # the exact covariance gives exactly its eigen-decomposition
    vectors, lengths = pca_of(q @ np.diag(scales ** 2) @ q.T * 9, 10)
    np.testing.assert_allclose(lengths, scales, rtol=1e-10)
    np.testing.assert_allclose(np.abs(vectors.T @ q), np.eye(d), atol=1e-8)


def test_an_authors_pca_file_in_hwc_order_reads_as_ours(tmp_path):
    """The authors flatten images as H x W x C; their file reads into this project's C x H x W rows."""
    rng = np.random.default_rng(1)
    images = rng.normal(size=(50, 2, 3, 4))                               # N, C, H, W
    ours = images.reshape(50, -1)
    theirs = images.transpose(0, 2, 3, 1).reshape(50, -1)
    for name, data, extra in (("ours", ours, {"layout": np.array("CHW")}), ("theirs", theirs, {})):
        vectors, lengths = pca_of(data.T @ data, 50)
        np.savez(tmp_path / f"{name}.npz", eigenvectors=vectors.astype(np.float32),
                 eigenvalues=lengths.astype(np.float32), **extra)
    u1, s1 = load_pca(str(tmp_path / "ours.npz"), [2, 3, 4])
    u2, s2 = load_pca(str(tmp_path / "theirs.npz"), [2, 3, 4])
    torch.testing.assert_close(s1, s2)
    g = torch.from_numpy(ours[:5]).float()
    torch.testing.assert_close((g @ u1).abs(), (g @ u2).abs(), rtol=1e-4, atol=1e-4)   # columns up to sign
    with pytest.raises(ValueError, match="inputs of"):
        load_pca(str(tmp_path / "ours.npz"), [3, 3, 4])


def forde_config(tmp_path, name, **changes):
    cfg = yaml.safe_load(open(os.path.join(REPO, "default_configs", "forde", "train.yaml")))
    cfg.update(save_path=str(tmp_path / f"{name}.pt"), device="cpu", epochs=2)
    cfg["model"]["kwargs"] = {"width": 4}
    cfg["model"]["joint_members"] = 3
    cfg["forde"]["pca_path"] = str(tmp_path / "pca.npz")
    cfg["data"]["train"]["id_classes"] = cfg["data"]["val"]["id_classes"] = [0, 1, 2, 3]
    cfg["data"]["num_classes"] = 4
    set_nested(cfg, changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path), cfg


@pytest.fixture(scope="module")
def pca_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pca")
    cfg = yaml.safe_load(open(os.path.join(REPO, "default_configs", "forde", "pca.yaml")))
    cfg["save_path"] = str(folder / "pca.npz")
    (folder / "pca.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tasks", "forde", "compute_pca.py"), "--config",
                           str(folder / "pca.yaml")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return cfg["save_path"]


def test_without_repulsion_the_members_train_exactly_as_independent_networks(tmp_path):
    """repulsion: none is M networks trained apart: member m equals tasks/classify/train.py run
    with seed.init = init x M + m on the same data seed."""
    from tasks.classify.training import train
    from tasks.forde.train_forde import make_objective

    _, cfg = forde_config(tmp_path, "ensemble", **{"forde/repulsion": "none", "seed/init": 1})
    history = train(dict(cfg), make_objective)["history"]
    assert history[-1]["repulsion"] == 0 and history[-1]["train_ce"] > 0
    joint = torch.load(cfg["save_path"], weights_only=False)
    assert joint["forde"]["repulsion"] == "none"
    from tasks.classify.checkpoints import classifier_from
    members = classifier_from(joint)
    for m in range(3):
        single = copy.deepcopy(cfg)
        single["model"] = {k: v for k, v in cfg["model"].items() if k != "joint_members"}
        single["seed"] = {"init": 1 * 3 + m, "data": cfg["seed"]["data"]}
        single["save_path"] = str(tmp_path / f"single_{m}.pt")
        train(single)
        alone = torch.load(single["save_path"], weights_only=False)["state_dict"]
        mine = members.member(m, create_model("small_cnn", 4, width=4)).state_dict()
        for name, value in alone.items():
            torch.testing.assert_close(mine[name], value, rtol=1e-4, atol=1e-5, msg=f"member {m}: {name}")


def test_a_deep_ensemble_on_its_own_batches_is_m_runs_of_their_own(tmp_path):
    """member_batches: own (the baseline's setting): member m has its own data order and augmentation
    and equals tasks/classify/train.py run alone with seeds (init x M + m, data x M + m)."""
    from tasks.classify.checkpoints import classifier_from
    from tasks.classify.training import train
    from tasks.forde.train_forde import make_objective

    _, cfg = forde_config(tmp_path, "ensemble", **{"forde/repulsion": "none", "member_batches": "own",
                                                   "seed/init": 1, "seed/data": 2})
    assert cfg["data"]["train"]["augment"] is True
    history = train(dict(cfg), make_objective)["history"]
    assert history[-1]["repulsion"] == 0 and history[-1]["train_ce"] > 0
    members = classifier_from(torch.load(cfg["save_path"], weights_only=False))
    for m in range(3):
        single = copy.deepcopy(cfg)
        single["model"] = {k: v for k, v in cfg["model"].items() if k != "joint_members"}
        single.pop("member_batches")
        single["seed"] = {"init": 1 * 3 + m, "data": 2 * 3 + m}
        single["save_path"] = str(tmp_path / f"single_{m}.pt")
        train(single)
        alone = torch.load(single["save_path"], weights_only=False)["state_dict"]
        mine = members.member(m, create_model("small_cnn", 4, width=4)).state_dict()
        for name, value in alone.items():
            torch.testing.assert_close(mine[name], value, rtol=1e-4, atol=1e-5, msg=f"member {m}: {name}")


def test_forde_keeps_one_shared_batch(tmp_path, pca_file):
    """The repulsion compares members at the same inputs: own batches are refused with it."""
    from tasks.classify.training import train
    from tasks.forde.train_forde import make_objective

    _, cfg = forde_config(tmp_path, "forde", **{"forde/pca_path": pca_file, "member_batches": "own"})
    with pytest.raises(ValueError, match="needs member_batches: shared"):
        train(dict(cfg), make_objective)
    _, cfg = forde_config(tmp_path, "single", **{"member_batches": "own"})
    cfg["model"].pop("joint_members")
    with pytest.raises(ValueError, match="model.joint_members"):
        train(dict(cfg))


def test_resume_after_sigterm_is_bit_identical(tmp_path, pca_file):
    common = {"epochs": 3, "forde/pca_path": pca_file}
    whole, wcfg = forde_config(tmp_path, "whole", **common)
    proc = subprocess.run([sys.executable, SCRIPT, "--config", whole], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stopped, scfg = forde_config(tmp_path, "stopped", **common)
    ckpt = scfg["save_path"] + ".last.pt"
    proc = subprocess.Popen([sys.executable, SCRIPT, "--config", stopped], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not os.path.exists(ckpt) and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 128 + signal.SIGTERM, out
    resumed = subprocess.run([sys.executable, SCRIPT, "--config", stopped], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout, resumed.stderr[-3000:]
    a, b = (torch.load(c["save_path"], weights_only=False) for c in (wcfg, scfg))
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    assert [h["epoch"] for h in b["history"]] == [1, 2, 3]
    assert all(h["repulsion"] > 0 and h["bandwidth"] > 0 for h in b["history"])


def test_two_gloo_processes_equal_one_over_the_same_global_batch(tmp_path, pca_file):
    """The repulsion over the gathered global batch: 2 processes give the weights of one."""
    common = {"epochs": 1, "forde/pca_path": pca_file, "model/kwargs": {"width": 4, "norm": "group"},
              "data/train/augment": False}
    one, c1 = forde_config(tmp_path, "one", devices=1, **common)
    two, c2 = forde_config(tmp_path, "two", devices=2, **common)
    for path in (one, two):
        proc = subprocess.run([sys.executable, SCRIPT, "--config", path], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (torch.load(c["save_path"], weights_only=False) for c in (c1, c2))
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=1e-4, atol=1e-5)
    assert b["history"][0]["repulsion"] == pytest.approx(a["history"][0]["repulsion"], rel=1e-4)


def test_double_backprop_under_autocast_and_the_gradient_scaler(pca_file):
    """bf16 autocast (CPU here; fp16 on CUDA below) and a loss scale: the same gradients as float32."""
    from tasks.forde.train_forde import FordeObjective

    cfg = yaml.safe_load(open(os.path.join(REPO, "default_configs", "forde", "train.yaml")))
    cfg["model"]["joint_members"] = 3
    cfg["forde"]["pca_path"] = pca_file
    # measured on this model: relative error of the whole gradient 0.051 (bf16), 0.013 (fp16), against
    # 8 and 11 bits of mantissa; the bounds leave 2x
    bound = {torch.bfloat16: 0.1, torch.float16: 0.03}
    devices = [("cpu", torch.bfloat16), ("cpu", torch.float16)] + \
        ([("cuda", torch.float16)] if torch.cuda.is_available() else [])
    for device, dtype in devices:
        objective = FordeObjective(cfg, torch.device(device))
        torch.manual_seed(0)
        net = create_model("small_cnn", 10, joint_members=3, member_seeds=[0, 1, 2], width=4).to(device)
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.2)
        x, y = torch.randn(16, 3, 16, 16, device=device), torch.randint(0, 10, (16,), device=device)
        loss, *_ = objective(net, x, y)
        reference = torch.autograd.grad(loss, list(net.parameters()))
        scaler = torch.amp.GradScaler(device, init_scale=2.0 ** 16)
        opt = torch.optim.SGD(net.parameters(), lr=0.0)
        for _ in range(20):            # as the training loop: an overflowing scale skips the step and halves
            with torch.autocast(device, dtype=dtype):
                loss16, *_ = objective(net, x, y)
            net.zero_grad()
            scaler.scale(loss16).backward()
            scaler.unscale_(opt)
            if all(torch.isfinite(p.grad).all() for p in net.parameters()):
                break
            scaler.step(opt)
            scaler.update()
        assert float(loss16) == pytest.approx(float(loss), rel=0.05)
        # a small parameter's gradient can be off by ~20% in bf16; the whole gradient (unscaled: a wrong
        # scale would be 4096x off) and each parameter's direction agree
        mixed = torch.cat([p.grad.flatten() for p in net.parameters()])
        full = torch.cat([g.flatten() for g in reference])
        assert torch.isfinite(mixed).all()
        assert float((mixed - full).norm() / full.norm()) < bound[dtype], dtype
        for p, g in zip(net.parameters(), reference):
            if g.norm() > 0:
                assert float(F.cosine_similarity(p.grad.flatten(), g.flatten(), dim=0)) > 0.9


def keep_seeds(sheet, seeds: int) -> int:
    """The shipped sheet cut to its rows of seeds 0 .. seeds-1 (the table row depending on theirs only)."""
    import csv

    with open(sheet, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    kept = [r for r in rows if " seed " not in r["name"] or int(r["name"].rsplit(" ", 1)[1]) < seeds]
    table = kept[-1]
    assert table["name"] == "table"
    table["depends_on"] = ", ".join(d for d in table["depends_on"].split(", ") if int(d.rsplit(" ", 1)[1]) < seeds)
    with open(sheet, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
    assert len(kept) == 2 + 6 * seeds
    return seeds


@pytest.mark.timeout(2400)          # minutes on a quiet 2-core machine; more with its cores busy
def test_forde_sheet_end_to_end_through_sheetrun(tmp_path):
    """The PCA, 6 trainings, 6 evaluations and the table (the shipped sheet's first two seeds of
    five: the smallest that still has a spread over seeds); each evaluation equals its training's
    last validation, and the table has the three methods over the seeds and each FoRDE's difference
    to the deep ensemble paired by seed."""
    root = copy_project(tmp_path / "project", ("default_configs", "result_sheets", "scripts"))
    train_cfg = root / "default_configs" / "forde" / "train.yaml"
    cfg = yaml.safe_load(train_cfg.read_text())
    cfg["epochs"], cfg["model"]["joint_members"] = 2, 4
    train_cfg.write_text(yaml.safe_dump(cfg))
    ev = root / "default_configs" / "forde" / "evaluate.yaml"
    cfg = yaml.safe_load(ev.read_text())
    cfg["data"]["domains"]["C"].update(corruptions=["contrast", "gaussian_noise"], severities=[1, 3])
    ev.write_text(yaml.safe_dump(cfg))
    sheet = root / "result_sheets" / "forde.csv"
    seeds = keep_seeds(sheet, 2)
    rows = run_project_sheet(root, sheet, tmp_path)
    assert [r["status"] for r in rows] == ["Completed"] * 14
    for r in rows:
        if r["name"].startswith("eval "):
            metrics = json.load(open(root / r["run_folder"] / "eval_metrics.json"))
            assert metrics["kind"] == "joint" and metrics["members"] == 4
            saved = torch.load(root / "models" / "forde" / (r["name"][5:].replace(" seed ", "_") + ".pt"),
                               weights_only=False)
            assert metrics["training"]["forde"]["repulsion"] == saved["forde"]["repulsion"]
            assert float(r["acc"]) == pytest.approx(100 * saved["history"][-1]["val_acc"], abs=0.006)
            assert 0 < float(r["cA"]) <= 100 and float(r["cNLL"]) > 0
            pooled = [metrics["results"][f"pooled/C-{s}"]["acc1"] for s in (1, 3)]
            assert float(r["cA"]) == pytest.approx(100 * np.mean(pooled), abs=0.006)
            # cECE: the mean of the severities' ECEs (each severity's corruptions pooled), not one pooled ECE
            eces = [metrics["results"][f"pooled/C-{s}"]["ECE"] for s in (1, 3)]
            assert float(r["cECE"]) == pytest.approx(np.mean(eces), abs=6e-5)
        elif r["name"] != "pca" and r["name"] != "table":
            assert float(r["train_ce"]) > 0, r
            trained = torch.load(root / "models" / "forde" / (r["name"].replace(" seed ", "_") + ".pt"),
                                 weights_only=False)["config"]
            if r["name"].startswith("ensemble"):
                assert float(r["repulsion"]) == 0 and not r.get("bandwidth"), r
                assert trained["member_batches"] == "own"              # the deep ensemble: a batch per member
            else:
                assert float(r["repulsion"]) > 0 and float(r["bandwidth"]) > 0, r
                assert trained["member_batches"] == "shared"
    table = (root / rows[-1]["run_folder"] / "forde.md").read_text()
    means, paired = table.split("paired by seed")
    for method in ("Deep ensemble", "FoRDE-PCA", "FoRDE-identity"):
        assert f"| {method} | {seeds} |" in means
    # each method − the deep ensemble of the same seed, from the rows themselves: mean ± standard error
    by_name = {r["name"]: r for r in rows}
    import pandas as pd

    diffs = pd.read_csv(root / rows[-1]["run_folder"] / "forde_differences.csv", header=0)
    for method, prefix in (("FoRDE-PCA", "forde_pca"), ("FoRDE-identity", "forde_identity")):
        d = np.array([float(by_name[f"eval {prefix} seed {s}"]["cNLL"]) - float(by_name[f"eval ensemble seed {s}"]["cNLL"])
                      for s in range(seeds)])
        line = diffs[diffs["method"] == method].iloc[0]
        assert int(line["seeds"]) == seeds
        assert float(line["cNLL mean"]) == pytest.approx(d.mean(), abs=2e-4)
        assert float(line["cNLL se"]) == pytest.approx(d.std(ddof=1) / np.sqrt(seeds), abs=2e-4)
        assert f"| {method} | {seeds} | " in paired
    assert (root / rows[-1]["run_folder"] / "forde.png").stat().st_size > 10_000


@pytest.mark.parametrize("epochs,ratio", [(300, 0.01), (150, 0.001), (10, 0.01)])
def test_the_rate_is_the_authors_lr_scheduler_every_step(epochs, ratio):
    """per_epoch flat_linear_flat equals the authors' LrScheduler (train_forde.py) at every step."""
    from tasks.classify.schedules import make_schedule

    def authors(epoch, m1=0.5, m2=0.9):
        t = epoch / epochs
        return 1.0 if t <= m1 else 1.0 - (1.0 - ratio) * (t - m1) / (m2 - m1) if t <= m2 else ratio
    steps = 7
    factor = make_schedule({"name": "flat_linear_flat", "flat_until": 0.5, "linear_until": 0.9,
                            "final_factor": ratio, "per_epoch": True}, steps, epochs)
    for epoch in range(epochs):
        for step in range(steps):
            assert factor(epoch * steps + step) == pytest.approx(authors(epoch), abs=1e-12), (epoch, step)


def test_a_joint_ensembles_stacked_biases_are_spared_weight_decay_like_any_bias():
    from tasks.classify.setup import param_groups

    net = create_model("small_cnn", 5, joint_members=3, width=4)
    decay, spared = param_groups(net, 5e-4, decay_norm_and_bias=False)
    names = {id(p): n for n, p in net.named_parameters()}
    assert all(names[id(p)].endswith(".bias") or p.dim() == 1 for p in spared["params"])
    assert all(p.dim() > 1 and not names[id(p)].endswith(".bias") for p in decay["params"])
    assert any(p.dim() == 2 for p in spared["params"])                      # the classifier's [M, K] bias
    everything, none = param_groups(net, 5e-4, decay_norm_and_bias=True)
    assert not none["params"] and len(everything["params"]) == len(list(net.parameters()))
