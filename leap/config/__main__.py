"""``python -m leap.config > config/schema.yaml``."""

import sys

import yaml

from leap.config import workflow_schema

sys.stdout.write("# Generated from leap/config/ by `python -m leap.config`; edit the dataclasses, not this file.\n")
sys.stdout.write(yaml.safe_dump(workflow_schema(), sort_keys=False, width=120))
