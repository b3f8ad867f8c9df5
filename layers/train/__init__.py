"""tensorpack's trainers: ``from layers.train import TrainConfig, SimpleTrainer, launch_train_with_config``."""
from .base import StopTraining, Trainer, TrainLoop
from .config import DEFAULT_CALLBACKS, DEFAULT_MONITORS, AutoResumeTrainConfig, TrainConfig
from .interface import apply_default_prefetch, launch_train_with_config
from .tower import SingleCostTrainer, TowerTrainer
from .trainers import (
    NoOpTrainer,
    SimpleTrainer,
    SyncMultiGPUTrainer,
    SyncMultiGPUTrainerParameterServer,
    SyncMultiGPUTrainerReplicated,
)

__all__ = ["StopTraining", "Trainer", "TrainLoop", "TrainConfig", "AutoResumeTrainConfig", "DEFAULT_CALLBACKS",
           "DEFAULT_MONITORS", "launch_train_with_config", "apply_default_prefetch", "TowerTrainer",
           "SingleCostTrainer", "SimpleTrainer", "NoOpTrainer", "SyncMultiGPUTrainer",
           "SyncMultiGPUTrainerParameterServer", "SyncMultiGPUTrainerReplicated"]
