"""Typed configuration: remediator.yml, rules/, policies/ and the inventory."""

from remediator.config.loader import load_config
from remediator.config.models import Config, Host, RuleSpec, StepSpec
from remediator.config.problems import Problem

__all__ = ["Config", "Host", "Problem", "RuleSpec", "StepSpec", "load_config"]
