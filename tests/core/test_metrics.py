"""mIoU, per-class IoU and pixel accuracy against small hand-computed cases."""

import math

import numpy as np
import pytest

from edgeseg.metrics import Agreement, ConfusionMatrix, argmax_agreement


def test_perfect_prediction_scores_100():
    gt = np.array([[0, 1], [2, 2]], np.uint8)
    cm = ConfusionMatrix(3)
    cm.update(gt, gt)
    s = cm.compute()
    assert s.miou == 100.0 and s.pixel_accuracy == 100.0
    assert s.per_class_iou == (100.0, 100.0, 100.0)


def test_hand_computed_case():
    # gt:   0 0 1 1      pred: 0 1 1 1
    #       2 2 2 255          2 0 2 0
    gt = np.array([[0, 0, 1, 1], [2, 2, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 0]], np.uint8)
    cm = ConfusionMatrix(3)
    cm.update(gt, pred)
    s = cm.compute()
    # class 0: tp 1, gt 2, pred 2 -> 1/3; class 1: tp 2, gt 2, pred 3 -> 2/3; class 2: tp 2, gt 3, pred 2 -> 2/3
    assert s.per_class_iou == pytest.approx((100 / 3, 200 / 3, 200 / 3))
    assert s.miou == pytest.approx((1 / 3 + 2 / 3 + 2 / 3) / 3 * 100)
    assert s.pixel_accuracy == pytest.approx(5 / 7 * 100)  # the 255 pixel is ignored


def test_confusion_matrix_accumulates_over_the_set_not_a_mean_of_images():
    cm = ConfusionMatrix(2)
    # image 1: 1 pixel of class 1, predicted right; image 2: 3 pixels of class 1, all predicted 0
    cm.update(np.array([1, 0, 0, 0]), np.array([1, 0, 0, 0]))
    cm.update(np.array([1, 1, 1, 0]), np.array([0, 0, 0, 0]))
    s = cm.compute()
    # class 1 over the set: tp 1, gt 4, pred 1 -> 1/4 (a mean of per-image IoUs would give (1 + 0) / 2)
    assert s.per_class_iou[1] == pytest.approx(25.0)
    # class 0: tp 4, gt 4, pred 7 -> 4/7
    assert s.per_class_iou[0] == pytest.approx(400 / 7)


def test_absent_classes_do_not_count_and_gt_only_mean_differs():
    gt = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 3])  # class 3 predicted but absent from gt; class 2 absent everywhere
    cm = ConfusionMatrix(4)
    cm.update(gt, pred)
    s = cm.compute()
    assert s.per_class_iou[2] is None
    assert s.per_class_iou[3] == 0.0
    assert s.miou == pytest.approx((100 + 50 + 0) / 3)
    assert s.miou_gt_classes == pytest.approx((100 + 50) / 2)


def test_prediction_outside_the_class_range_is_an_error():
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError, match="outside"):
        cm.update(np.array([0, 1]), np.array([0, 5]))


def test_empty_matrix_gives_nan_not_a_crash():
    assert math.isnan(ConfusionMatrix(3).compute().miou)


def test_argmax_agreement():
    assert argmax_agreement(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == 0.75


def test_agreement_pools_pixels_rather_than_averaging_images():
    # one agreeing pixel, then three disagreeing ones: 1 of 4 pixels agree (a per-image mean would say 0.5)
    agreement = Agreement()
    agreement.update(np.array([[2]]), np.array([[2]]))
    agreement.update(np.array([1, 1, 1]), np.array([0, 0, 0]))
    assert agreement.compute() == 0.25


def test_agreement_refuses_masks_of_different_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        Agreement().update(np.zeros((2, 2)), np.zeros((4,)))
