"""Face datasets: every source returns a `base.FaceDataset`."""
from __future__ import annotations

from enas_face.config import ConfigError, DataConfig
from enas_face.data.base import FaceDataset


def load_dataset(config: DataConfig) -> FaceDataset:
  """The dataset named by --dataset (today: the embedded synthetic faces)."""
  if config.dataset == "synthetic":
    from enas_face.data import synthetic
    return synthetic.make_synthetic_dataset(
        num_identities=config.synthetic_identities,
        images_per_identity=config.synthetic_images_per_identity,
        num_heldout_identities=config.synthetic_heldout_identities,
        heldout_images_per_identity=config.synthetic_heldout_images_per_identity,
        num_pairs=config.num_pairs, num_folds=config.num_folds,
        image_size=config.image_size, seed=config.seed)
  raise ConfigError(f"--dataset={config.dataset!r} is not supported; expected 'synthetic'")
