"""Offline data: dataset formats (D4RL HDF5, Minari), preprocessing into OfflineData, behaviour
policies and their collection in the simulators of `envs.tasks`, and the entry point
`load_dataset(task_name, cfg)`. Imports `envs.tasks`, never the reverse; never imports `agent`.

The behaviour-policy export command lives in `envs.datasets.export` (not imported here).
"""

from envs.datasets.errors import DatasetError
from envs.datasets.loading import dataset_path, ensure_dataset, load_dataset, load_task_dataset
from envs.datasets.offline_data import OfflineData, check_segment_lengths

__all__ = [
    "DatasetError",
    "OfflineData",
    "check_segment_lengths",
    "dataset_path",
    "ensure_dataset",
    "load_dataset",
    "load_task_dataset",
]
