"""Checkpoint reading, per-family key maps, resampling, and published weights."""

from keras_vit.weights.assignment import WeightAssignment, WeightsMismatchError
from keras_vit.weights.formats import CheckpointFormatError, detect_format, read_checkpoint
from keras_vit.weights.loader import load_weights, resolve_weights
from keras_vit.weights.published import PUBLISHED_WEIGHTS, published_names
from keras_vit.layers.resampling import resample_position_embedding, resize_grid
