"""Data helpers: the synthetic mini COCO generator and the dataset-layout check run before training/testing."""
from .layout import DatasetCheckError, check_annotation_file, check_config_data, expected_layout
from .mini_coco import DEFAULT_CLASSES, SHAPE_CLASSES, MiniCocoSpec, ensure, generate, read_spec

__all__ = ['DatasetCheckError', 'check_annotation_file', 'check_config_data', 'expected_layout', 'DEFAULT_CLASSES',
           'SHAPE_CLASSES', 'MiniCocoSpec', 'ensure', 'generate', 'read_spec']
