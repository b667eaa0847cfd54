"""What the engine's parts share: config, store, actions, clock, metrics."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from remediator.actions.base import Action
from remediator.clock import Clock
from remediator.config.models import Config
from remediator.metrics import Metrics
from remediator.rules import RuleSet
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
    work_ready: asyncio.Event = field(default_factory=asyncio.Event)
    outbox_ready: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.rules = RuleSet(self.config.rules)

    def swap_config(self, config: Config) -> None:
        """Run on a newly loaded config from now on (both assignments between two awaits)."""
        self.config, self.rules = config, RuleSet(config.rules)

    def dry_run(self, rule_dry_run: bool) -> bool:
        """Whether a step only records what it would run."""
        return self.config.file.dry_run or rule_dry_run
