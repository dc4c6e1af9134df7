"""The user-facing errors entry points turn into one line on stderr and exit code 2."""

from inverse_detr.analysis.subset import AnalysisError
from inverse_detr.config import ConfigError
from inverse_detr.data.coco import DataError
from inverse_detr.detectors.detr import DetrLoadError
from inverse_detr.export import InverterError
from inverse_detr.lit.checkpointing import CheckpointError
from inverse_detr.lit.guards import NonFiniteLossError

USER_ERRORS = (
    AnalysisError,
    CheckpointError,
    ConfigError,
    DataError,
    DetrLoadError,
    InverterError,
    NonFiniteLossError,
)
