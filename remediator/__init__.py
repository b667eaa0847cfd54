"""remediator: turn Alertmanager notifications into safe, audited remediation."""

__version__ = "0.1.0"
