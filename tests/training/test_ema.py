"""Weight averaging used by the image phase, and the rule that later phases keep the image
head the image phase chose."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from core.errors import RunStateError
from core.training.ema import WeightAverage
from core.training.phases import fix_image_path


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def test_update_is_an_exponential_average_after_warmup():
    net = small_net()
    avg = WeightAverage(net, ("0.",), decay=0.9)
    avg.updates = 1000  # past the warm-up: the decay is the configured one
    before = avg.shadow["0.weight"].clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    avg.update()
    assert torch.allclose(avg.shadow["0.weight"], 0.9 * before + 0.1 * net[0].weight)
    assert set(avg.shadow) == {"0.weight", "0.bias"}  # only the named prefix is averaged


def test_warmup_forgets_early_weights_fast():
    avg = WeightAverage(small_net(), ("0.",), decay=0.999)
    assert avg.current_decay() == pytest.approx(0.1)
    avg.updates = 10_000
    assert avg.current_decay() == 0.999


def test_buffers_follow_and_integer_buffers_are_copied():
    net = small_net()
    avg = WeightAverage(net, ("1.",), decay=0.5)
    net.train()
    net(torch.randn(8, 4))  # BatchNorm updates running stats and num_batches_tracked in place
    avg.update()
    assert int(avg.shadow["1.num_batches_tracked"]) == 1
    assert not torch.equal(avg.shadow["1.running_mean"], torch.zeros(3))


def test_applied_swaps_in_the_average_and_restores_the_live_weights():
    net = small_net()
    avg = WeightAverage(net, ("0.", "2."), decay=0.5)
    with torch.no_grad():
        net[2].weight.mul_(3.0)
    live = net[2].weight.detach().clone()
    with avg.applied():
        assert torch.equal(net[2].weight, avg.shadow["2.weight"])
        assert not torch.equal(net[2].weight, live)
    assert torch.equal(net[2].weight, live)


def test_state_round_trip_and_mismatch():
    net = small_net()
    avg = WeightAverage(net, ("0.",), decay=0.5)
    with torch.no_grad():
        net[0].weight.add_(2.0)
    avg.update()
    other = WeightAverage(small_net(), ("0.",), decay=0.5)
    other.load_state_dict(avg.state_dict())
    assert other.updates == 1 and torch.equal(other.shadow["0.weight"], avg.shadow["0.weight"])
    with pytest.raises(RunStateError, match="--run-dir"):
        WeightAverage(small_net(), ("2.",), decay=0.5).load_state_dict(avg.state_dict())
    with pytest.raises(ValueError):
        WeightAverage(small_net(), ("nothing.",), decay=0.5)


@pytest.mark.parametrize("done, encoder_trains, trainable", [
    (["image"], False, False),   # image phase ran: its projection and head stay fixed
    (["image"], True, True),     # the image encoder is fine-tuned: the head must follow it
    ([], False, True),           # pretrained encoder, no image phase: the head has to be trained
])
def test_image_path_fixed_only_after_the_image_phase(done, encoder_trains, trainable):
    model = SimpleNamespace(image_proj=nn.Linear(4, 3), image_head=nn.Linear(3, 2))
    fix_image_path(model, image_phase_ran="image" in done, image_encoder_trains=encoder_trains)
    for p in [*model.image_proj.parameters(), *model.image_head.parameters()]:
        assert p.requires_grad is trainable
