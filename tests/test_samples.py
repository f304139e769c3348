"""sample_data: the shipped pairs are what the generator draws, masks read back as labels, and the
class-frequency table is consistent with the dataset."""

import json

import numpy as np
import pytest

from segloss.train import data
from segloss.train.samples import SAMPLE_DIR, frequency_table, load_pair, read_manifest, write_samples
from segloss.uploads.loaders import load_mask


def test_written_samples_round_trip_to_the_generator_output(tmp_path):
    manifest = write_samples(tmp_path, seeds=(5,), image_size=48)
    assert set(manifest) == set(data.DATASETS)
    for name, info in data.DATASETS.items():
        entry = manifest[name]
        assert entry["class_names"] == list(info.class_names) and len(entry["samples"]) == 1
        image, labels = load_pair(name, 0, tmp_path)
        images, masks = data.make_batch(name, 1, 48, 5)
        np.testing.assert_array_equal(image, data.to_uint8_image(images[0]))
        np.testing.assert_array_equal(labels, masks[0].numpy())
        mask = load_mask(str(tmp_path / entry["samples"][0]["mask"]), num_classes=info.num_classes)
        np.testing.assert_array_equal(mask.labels, masks[0].numpy())  # the upload reader agrees
    assert json.loads((tmp_path / "datasets.json").read_text()) == manifest


def test_shipped_manifest_lists_existing_pairs_for_every_dataset():
    manifest = read_manifest()
    for name in data.DATASETS:
        assert len(manifest[name]["samples"]) >= 3
        for entry in manifest[name]["samples"]:
            assert (SAMPLE_DIR / entry["image"]).is_file() and (SAMPLE_DIR / entry["mask"]).is_file()


@pytest.mark.parametrize("name", sorted(data.DATASETS))
def test_frequency_table_columns_agree(name):
    table = frequency_table(name)
    shares = np.array(table["pixel share"])
    assert len(table["class"]) == data.DATASETS[name].num_classes
    assert shares.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(np.array(table["1 in N pixels"]) * shares, 1.0)
    np.testing.assert_allclose(np.array(table["vs. largest"]), shares.max() / shares)
    weights = np.array(table["median-frequency weight"])
    assert weights[np.argmin(shares)] == weights.max()  # the rarest class weighs most


def test_missing_manifest_and_bad_index_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m segloss samples"):
        read_manifest(tmp_path)
    write_samples(tmp_path, seeds=(1,), image_size=32)
    with pytest.raises(ValueError, match="out of range"):
        load_pair("street", 1, tmp_path)
