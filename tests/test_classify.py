"""tasks/classify/train.py: schedules, weight decay groups, training, resume after SIGTERM,
DistributedDataParallel over 2 gloo processes against 1 process, MIMO."""
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from conftest import REPO, set_nested
from tasks.classify import schedules
from tasks.classify.checkpoints import load_classifier
from tasks.classify.setup import param_groups
from tasks.models import create_model

SCRIPT = os.path.join(REPO, "tasks", "classify", "train.py")


def config(tmp, name, **changes):
    with open(os.path.join(REPO, "default_configs", "classify", "train.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg.update(save_path=str(tmp / f"{name}.pt"), device="cpu")
    set_nested(cfg, changes)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path), cfg


def run(path, **kw):
    return subprocess.run([sys.executable, SCRIPT, "--config", path], capture_output=True, text=True, timeout=300,
                          **kw)


def test_schedules():
    f = schedules.make_schedule({"name": "step", "milestones": [2, 4], "gamma": 0.1}, 10, 6)
    assert [f(t) for t in (0, 19, 20, 39, 40, 59)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    f = schedules.make_schedule({"name": "cosine", "warmup_epochs": 1}, 10, 3)
    assert [f(t) for t in range(10)] == pytest.approx([(t + 1) / 10 for t in range(10)])
    assert f(10) == pytest.approx(1.0) and f(20) == pytest.approx(0.5)
    assert f(29) == pytest.approx(0.5 * (1 + math.cos(math.pi * 19 / 20)))
    f = schedules.make_schedule({"name": "flat_linear_flat", "flat_until": 0.5, "linear_until": 0.9,
                                 "final_factor": 0.01}, 10, 10)
    assert f(0) == 1 and f(50) == 1 and f(70) == pytest.approx(1 + (0.01 - 1) * 0.5) and f(95) == pytest.approx(0.01)
    assert schedules.make_schedule({"name": "constant"}, 5, 2)(7) == 1.0
    with pytest.raises(ValueError, match="schedule.name"):
        schedules.make_schedule({"name": "exp"}, 5, 2)


def test_weight_decay_spares_norm_and_bias():
    model = create_model("cifar_resnet18", num_classes=3, width=8)
    decay, no_decay = param_groups(model, 5e-4, decay_norm_and_bias=False)
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0 and len(no_decay["params"]) > 20
    everything, empty = param_groups(model, 5e-4, decay_norm_and_bias=True)
    assert not empty["params"] and len(everything["params"]) == len(list(model.parameters()))


def model_first_tensor(saved: dict) -> torch.Tensor:
    return saved["state_dict"][next(iter(saved["state_dict"]))]


@pytest.mark.timeout(2400)          # minutes on a quiet 2-core machine; more with its cores busy
def test_training_reaches_the_row_and_the_saved_model_reloads(tmp_path):
    path, cfg = config(tmp_path, "cnn", epochs=4, keep_checkpoints=[2])
    proc = run(path)
    assert proc.returncode == 0, proc.stderr
    saved = torch.load(cfg["save_path"], weights_only=False)
    assert [h["epoch"] for h in saved["history"]] == [1, 2, 3, 4]
    kept = torch.load(tmp_path / "cnn.epoch2.pt", weights_only=False)       # keep_checkpoints: [2]
    assert kept["epoch"] == 2 and [h["epoch"] for h in kept["history"]] == [1, 2]
    assert not (tmp_path / "cnn.epoch3.pt").exists()
    # every kept snapshot is read by the one reader, by its epoch, as a model
    from tasks.classify.checkpoints import read_classifier, snapshots
    assert snapshots(cfg["save_path"]) == {2: str(tmp_path / "cnn.epoch2.pt")}
    assert read_classifier(cfg["save_path"], epoch=2)["epoch"] == 2 and saved["epoch"] == 4
    snapshot = load_classifier(cfg["save_path"], epoch=2)
    assert not torch.equal(snapshot.state_dict()[next(iter(kept["state_dict"]))], model_first_tensor(saved))
    with pytest.raises(FileNotFoundError, match="kept: \\[2\\]"):
        read_classifier(cfg["save_path"], epoch=3)
    assert saved["history"][-1]["val_acc"] > 0.9          # digits 0-4 are easy
    assert not os.path.exists(cfg["save_path"] + ".last.pt")
    # the per-epoch validation gives what evaluate.py's reading of the saved file gives
    from tasks.classify.scoring import evaluate_domain, load_kind, summarise
    from tasks.classify.setup import build_data
    _, val = build_data(cfg)
    got = summarise(evaluate_domain(load_kind([cfg["save_path"]], "auto", torch.device("cpu")), val, 100,
                                    torch.device("cpu")), 10)
    assert got["acc1"] == pytest.approx(saved["history"][-1]["val_acc"], abs=1e-12)
    assert got["NLL"] == pytest.approx(saved["history"][-1]["val_nll"], rel=1e-6)


@pytest.mark.timeout(2400)          # minutes on a quiet 2-core machine; more with its cores busy
def test_resume_after_sigterm_is_bit_identical(tmp_path):
    common = {"epochs": 5, "model/kwargs": {"width": 8}}
    whole, wcfg = config(tmp_path, "whole", **common)
    assert run(whole).returncode == 0
    stopped, scfg = config(tmp_path, "stopped", **common)
    ckpt = scfg["save_path"] + ".last.pt"
    proc = subprocess.Popen([sys.executable, SCRIPT, "--config", stopped], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not os.path.exists(ckpt) and time.time() < deadline:      # the end of epoch 1
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "checkpoint saved at epoch" in out
    resumed = run(stopped)
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout, resumed.stderr
    a = torch.load(wcfg["save_path"], weights_only=False)
    b = torch.load(scfg["save_path"], weights_only=False)
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    assert [h["epoch"] for h in b["history"]] == [1, 2, 3, 4, 5]


@pytest.mark.timeout(2400)          # minutes on a quiet 2-core machine; more with its cores busy
def test_two_gloo_processes_equal_one_over_the_same_global_batch(tmp_path):
    """devices: 2 (the script starts the processes) and torchrun --nproc_per_node 2 both give the
    weights of one process over the same global batches."""
    common = {"epochs": 2, "model/kwargs": {"width": 8, "norm": "none"}, "data/train/augment": False}
    one, c1 = config(tmp_path, "one", devices=1, **common)
    two, c2 = config(tmp_path, "two", devices=2, **common)
    outs = []
    for path in (one, two):
        proc = run(path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs.append(proc.stdout)
    assert "on 1 x cpu" in outs[0] and "on 2 x cpu" in outs[1]
    a = torch.load(c1["save_path"], weights_only=False)
    b = torch.load(c2["save_path"], weights_only=False)
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=0, atol=5e-6)
    for ha, hb in zip(a["history"], b["history"]):
        assert hb["train_loss"] == pytest.approx(ha["train_loss"], rel=1e-5)
        assert hb["val_acc"] == ha["val_acc"]
    # the same under torchrun (it sets RANK / WORLD_SIZE; the config says 1 device)
    run_path, c3 = config(tmp_path, "torchrun", devices=1, **common)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           SCRIPT, "--config", run_path], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 x cpu" in proc.stdout
    c = torch.load(c3["save_path"], weights_only=False)
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(c["state_dict"][k], v, rtol=0, atol=5e-6)


@pytest.mark.timeout(2400)          # minutes on a quiet 2-core machine; more with its cores busy
def test_mimo_trains_and_averages_its_members(tmp_path):
    path, cfg = config(tmp_path, "mimo", epochs=3, **{"model/mimo": {"members": 3, "rho": 0.6, "batch_reps": 2}})
    proc = run(path)
    assert proc.returncode == 0, proc.stderr
    assert "MIMO, 3 members" in proc.stdout
    model = load_classifier(cfg["save_path"])
    x = torch.randn(5, 3, 16, 16)
    per = model(x.unsqueeze(1).expand(-1, 3, -1, -1, -1))
    torch.testing.assert_close(model(x), per.mean(1))
    assert torch.load(cfg["save_path"], weights_only=False)["history"][-1]["val_acc"] > 0.6


def test_devices_are_checked_before_anything_starts(capsys):
    """devices: 8 where fewer GPUs are visible fails at once, saying how to give them; on a CPU,
    more processes than cores and amp are said (amp does nothing there)."""
    from tasks.classify.training import check_devices

    visible = torch.cuda.device_count()
    with pytest.raises(ValueError, match=f"devices: {visible + 1}, but {visible} GPU.*--gpus-per-job {visible + 1}"):
        check_devices({"device": "cuda"}, visible + 1)
    cores = len(os.sched_getaffinity(0))
    check_devices({"device": "cpu", "amp": "fp16"}, cores + 1)
    err = capsys.readouterr().err
    assert f"devices: {cores + 1} runs {cores + 1} processes on the CPU, which has {cores} core(s)" in err
    assert "amp: fp16 does nothing on the CPU" in err
    check_devices({"device": "cpu"}, 1)
    assert capsys.readouterr().err == ""
