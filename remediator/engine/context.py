"""What the engine's parts share: config, store, actions, clock, metrics."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from remediator.actions.base import Action
from remediator.actions.protected import Protected
from remediator.clock import Clock
from remediator.config.models import Config
from remediator.engine.guards import Guards
from remediator.metrics import Metrics
from remediator.replicas import config_hash
from remediator.rules import RuleSet
from remediator.silences.client import AlertmanagerClient
from remediator.store.base import Store


@dataclass
class EngineContext:
    """Dependencies, passed in; nothing module-level."""

    config: Config
    store: Store
    actions: dict[str, Action]
    clock: Clock
    metrics: Metrics
    rules: RuleSet = field(init=False)
    guards: Guards = field(init=False)
    protected: Protected = field(init=False)  # what block_ips may not drop, per config
    config_hash: str = field(init=False)  # of rules, policies, inventory (replicas.py)
    work_ready: asyncio.Event = field(default_factory=asyncio.Event)
    outbox_ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Alertmanager's API (the `alertmanager:` section, read at start) for `silence:` rules.
    silencer: AlertmanagerClient | None = None

    def __post_init__(self) -> None:
        self.swap_config(self.config)

    def swap_config(self, config: Config) -> None:
        """Run on a newly loaded config from now on (all assignments between two awaits)."""
        # Everything built first: a part that raises leaves the running set whole.
        rules, guards, protected = (
            RuleSet(config.rules),
            Guards(config),
            Protected.from_config(config),
        )
        digest = config_hash(config)
        self.config, self.rules, self.guards, self.protected = config, rules, guards, protected
        self.config_hash = digest
        self.metrics.set_config_hash(digest)

    def dry_run(self, rule_dry_run: bool) -> bool:
        """Whether a step only records what it would run."""
        return self.config.file.dry_run or rule_dry_run
