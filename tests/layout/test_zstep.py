"""The Z-step's matching and DETR's set loss toward its pseudo-targets."""

import pytest
import torch

from inverse_detr.layout.targets import Layout
from inverse_detr.layout.zstep import pseudo_targets, set_loss

NO_OBJECT = 7  # 7 real classes, logits of width 8


def layout(labels: list[int], boxes: list[list[float]], image_id: int = 0) -> Layout:
    return Layout(torch.tensor(labels), torch.tensor(boxes), image_id)


def random_outputs(batch: int = 2, queries: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    logits = torch.randn(batch, queries, NO_OBJECT + 1)
    boxes = torch.rand(batch, queries, 4) * 0.5 + 0.25
    return logits, boxes


LAYOUTS = [
    layout([1, 3], [[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.2]]),
    layout([2, 2, 5], [[0.2, 0.8, 0.1, 0.1], [0.5, 0.5, 0.4, 0.4], [0.8, 0.2, 0.2, 0.3]], 1),
]


def test_each_object_gets_exactly_one_query_and_the_rest_no_object():
    logits, boxes = random_outputs()
    z = pseudo_targets(logits, boxes, LAYOUTS)
    for b, target in enumerate(LAYOUTS):
        assert int(z.matched[b].sum()) == len(target)
        assert (z.classes[b][~z.matched[b]] == NO_OBJECT).all()
        for k in range(len(target)):  # object k sits on exactly one matched query
            same = (z.boxes[b] == target.boxes[k]).all(-1) & z.matched[b]
            assert int(same.sum()) == 1
            assert z.classes[b][same].item() == target.labels[k].item()


def test_matching_follows_the_predictions():
    logits, boxes = random_outputs(batch=1)
    target = LAYOUTS[0]
    boxes[0, 4], boxes[0, 1] = (
        target.boxes[0],
        target.boxes[1],
    )  # query 4 sees object 0, query 1 object 1
    logits[0, 4, 1] = logits[0, 1, 3] = 20.0
    z = pseudo_targets(logits, boxes, [target])
    assert z.matched[0].nonzero().flatten().tolist() == [1, 4]
    assert z.classes[0, 4] == 1 and z.classes[0, 1] == 3


def test_a_layout_larger_than_the_query_count_is_refused():
    logits, boxes = random_outputs(batch=1, queries=2)
    with pytest.raises(ValueError, match="3 objects > 2 queries"):
        pseudo_targets(logits, boxes, [LAYOUTS[1]])


def reached(tensor: torch.Tensor) -> bool:
    return tensor.grad is not None and bool(tensor.grad.abs().sum() > 0)


def test_loss_subsets_reach_only_their_outputs():
    logits, boxes = random_outputs()
    z = pseudo_targets(logits, boxes, LAYOUTS)
    for terms, moves_logits, moves_boxes in (
        ("class", True, False),
        ("box", False, True),
        ("both", True, True),
    ):
        lg, bx = logits.clone().requires_grad_(True), boxes.clone().requires_grad_(True)
        set_loss(lg, bx, z, terms).sum().backward()
        assert reached(lg) == moves_logits, terms
        assert reached(bx) == moves_boxes, terms


def test_perfect_predictions_have_no_box_loss_and_each_image_its_own_loss():
    logits, boxes = random_outputs()
    z = pseudo_targets(logits, boxes, LAYOUTS)
    exact = torch.where(z.matched[..., None], z.boxes, boxes)
    assert torch.allclose(set_loss(logits, exact, z, "box"), torch.zeros(2), atol=1e-4)
    together = set_loss(logits, boxes, z)
    alone = set_loss(logits[1:], boxes[1:], pseudo_targets(logits[1:], boxes[1:], LAYOUTS[1:]))
    assert torch.allclose(together[1:], alone)
    assert (together > 0).all()


def test_one_image_loss_is_detrs_own_set_loss():
    from transformers import DetrConfig
    from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss

    logits, boxes = random_outputs(batch=1)
    config = DetrConfig(num_labels=NO_OBJECT, auxiliary_loss=False)
    labels = [LAYOUTS[1].as_hf_labels()]
    theirs, _, _ = ForObjectDetectionLoss(logits, labels, logits.device, boxes, config)
    ours = set_loss(logits, boxes, pseudo_targets(logits, boxes, LAYOUTS[1:]))
    assert torch.allclose(ours, theirs.view(1), atol=1e-5)
