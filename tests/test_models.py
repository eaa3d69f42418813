"""The model registry, the CIFAR-style families and MIMO."""
import pytest
import torch

from tasks.models import MODELS, create_model
from tasks.models.mimo import MIMO, mimo_batch


@pytest.mark.parametrize("name", ["cifar_resnet18", "preact_resnet18", "small_cnn"])
def test_local_families_shape_and_width(name):
    small = create_model(name, num_classes=7, in_chans=1, width=8)
    out = small(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 7)
    wide = create_model(name, num_classes=7, in_chans=1, width=16)
    n = sum(p.numel() for p in small.parameters())
    assert sum(p.numel() for p in wide.parameters()) > 2.5 * n      # width scales the network


def test_cifar_resnet18_is_the_standard_one():
    net = create_model("cifar_resnet18", num_classes=10)
    assert sum(p.numel() for p in net.parameters()) == 11_173_962     # the usual CIFAR ResNet-18 count
    assert net.stem[0].kernel_size == (3, 3) and net.stem[0].stride == (1, 1)


def test_timm_names_and_local_weights(tmp_path):
    net = create_model("resnet18", num_classes=4)
    path = tmp_path / "w.pt"
    torch.save({"model": net.state_dict()}, path)
    again = create_model("resnet18", num_classes=4, weights=str(path))
    x = torch.randn(2, 3, 32, 32)
    net.eval(), again.eval()
    assert torch.equal(net(x), again(x))
    with pytest.raises(ValueError, match="unknown model"):
        create_model("resnet_does_not_exist", num_classes=3)
    assert {"cifar_resnet18", "preact_resnet18", "small_cnn"} <= set(MODELS)


def test_mimo_with_one_member_is_the_plain_network():
    torch.manual_seed(0)
    plain = create_model("small_cnn", num_classes=5, in_chans=3, width=8).eval()
    mimo = create_model("small_cnn", num_classes=5, in_chans=3, width=8, mimo=1).eval()
    mimo.net.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(mimo(x), plain(x))


def test_mimo_members_and_test_time_average():
    torch.manual_seed(0)
    mimo = create_model("small_cnn", num_classes=5, in_chans=1, width=8, mimo=3).eval()
    assert isinstance(mimo, MIMO)
    x = torch.randn(4, 1, 16, 16)
    per = mimo(x.unsqueeze(1).expand(-1, 3, -1, -1, -1))
    assert per.shape == (4, 3, 5)
    torch.testing.assert_close(mimo(x), per.mean(1))


def test_mimo_training_batches():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(100.0).view(100, 1, 1, 1)
    y = torch.arange(100)
    xb, yb = mimo_batch(x, y, members=3, rho=0.0, batch_reps=2, generator=g)
    assert xb.shape == (200, 3, 1, 1, 1) and yb.shape == (200, 3)
    assert torch.equal(xb[:, :, 0, 0, 0].long(), yb)                          # inputs and labels stay paired
    assert torch.equal(yb[:, 0], torch.arange(100).repeat(2))
    assert (yb[:, 1] != yb[:, 0]).float().mean() > 0.9                        # members see other samples
    xs, ys = mimo_batch(x, y, members=3, rho=1.0, batch_reps=1, generator=g)
    assert torch.equal(ys[:, 1], ys[:, 0]) and torch.equal(ys[:, 2], ys[:, 0])   # rho = 1: all shared
    _, yh = mimo_batch(x, y, members=3, rho=0.5, batch_reps=1, generator=g)
    share = (yh[:, 1] == yh[:, 0]).float().mean().item()
    assert 0.35 < share < 0.65
