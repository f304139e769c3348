"""Batches drawn ahead in worker processes are the very batches drawn in line."""

import functools

import torch

from segloss.train import data
from segloss.train.prefetch import BatchPrefetcher
from segloss.train.trainer import Trainer


def test_prefetched_batches_equal_batches_drawn_in_line_in_any_order():
    draw = functools.partial(data.make_batch, "street", 2, 32)
    prefetcher = BatchPrefetcher(draw, lambda k: 1000 + k, workers=2, depth=3)
    try:
        for k in (0, 1, 2, 5, 1):  # forward, a skip, and back (a reset)
            images, masks = prefetcher.get(k)
            expected_images, expected_masks = draw(1000 + k)
            assert torch.equal(images, expected_images) and torch.equal(masks, expected_masks)
    finally:
        prefetcher.close()


def test_dropping_the_scheduled_batches_keeps_the_workers():
    draw = functools.partial(data.make_batch, "street", 2, 32)
    prefetcher = BatchPrefetcher(draw, lambda k: 1000 + k, workers=1, depth=2)
    try:
        prefetcher.get(100)  # schedules 101 and 102
        assert prefetcher._pending
        prefetcher.drop_pending()
        assert not prefetcher._pending
        images, _ = prefetcher.get(0)
        assert torch.equal(images, draw(1000)[0])
    finally:
        prefetcher.close()


def test_a_trainer_with_prefetching_trains_exactly_as_one_without():
    runs = []
    for workers in (0, 2):
        trainer = Trainer("street", "focal", batch_size=2, image_size=32, seed=3, device="cpu", val_size=2,
                          prefetch_workers=workers)
        try:
            runs.append([trainer.step()["loss"] for _ in range(3)])
        finally:
            trainer.close()
    assert runs[0] == runs[1]
