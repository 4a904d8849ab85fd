"""Every setting of the package and the workflow, with its default, in one place.

The dataclasses below are the single source of truth: their field defaults are the
defaults everywhere (Python API, command line, workflow), their field docs are the
documentation, and the workflow's JSON schema (``config/schema.yaml``) is generated from
them (:func:`workflow_schema`; ``python -m leap.config > config/schema.yaml``, checked by
a test). Nothing here imports torch, so the Snakefile parses quickly. The parts:
:mod:`leap.config.fields` (declaring settings, dict <-> dataclass, schema),
:mod:`leap.config.exit_rule`, :mod:`leap.config.train` (loss and training),
:mod:`leap.config.workflow` (the workflow config and its checks).

Names that mean different things are kept apart: ``ExitConfig.min_layer`` is the exit
rule's ``l_min`` (Eq. 6); ``LeapLossConfig.focus_layer`` is the first layer of the loss's
"late layer focus" (``w_l`` and the default L_cross layers); the report maps paper layers
to student layers by relative depth (:func:`leap.claim_measures.paper_layer_to_student`).
"""

from leap.config.exit_rule import (
    EXIT_CONFIG_FILE,
    SERVING_BACKENDS,
    SERVING_KEY,
    STRATEGIES,
    ExitConfig,
    default_min_layer,
    read_exit_file,
    read_serving,
)
from leap.config.fields import dataclass_schema, from_dict, schema_errors, setting, to_plain
from leap.config.train import (
    EXIT_MARGINS,
    PAPER_TERMS,
    PRECISIONS,
    TERMS,
    LeapLossConfig,
    TrainConfig,
    uniform_layer_map,
)
from leap.config.workflow import (
    SOURCE,
    DataConfig,
    DiagnosticConfig,
    EvaluationConfig,
    LatencyConfig,
    PublishedModel,
    TeacherConfig,
    VariantsConfig,
    WorkflowConfig,
    check_gpu_settings,
    gpu_settings,
    validate_workflow_config,
    workflow_schema,
)

__all__ = [
    "DataConfig",
    "DiagnosticConfig",
    "EXIT_CONFIG_FILE",
    "SERVING_BACKENDS",
    "SERVING_KEY",
    "EXIT_MARGINS",
    "EvaluationConfig",
    "ExitConfig",
    "LatencyConfig",
    "LeapLossConfig",
    "PAPER_TERMS",
    "PRECISIONS",
    "PublishedModel",
    "SOURCE",
    "STRATEGIES",
    "TERMS",
    "TeacherConfig",
    "TrainConfig",
    "VariantsConfig",
    "WorkflowConfig",
    "check_gpu_settings",
    "dataclass_schema",
    "default_min_layer",
    "from_dict",
    "gpu_settings",
    "read_exit_file",
    "read_serving",
    "schema_errors",
    "setting",
    "to_plain",
    "uniform_layer_map",
    "validate_workflow_config",
    "workflow_schema",
]
