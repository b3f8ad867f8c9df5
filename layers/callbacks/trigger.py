"""Change when a callback fires: ``PeriodicTrigger``, ``PeriodicCallback``, ``EnableCallbackIf``."""
from __future__ import annotations

from .base import Callback, ProxyCallback

__all__ = ["PeriodicTrigger", "PeriodicCallback", "EnableCallbackIf"]


class PeriodicTrigger(ProxyCallback):
    """Call the wrapped callback's ``trigger()`` every ``every_k_steps`` global steps and/or every
    ``every_k_epochs`` epochs (and in ``before_train`` with ``before_train=True``) instead of after
    every epoch. Its other methods run as usual."""

    def __init__(self, triggerable, every_k_steps=None, every_k_epochs=None, before_train=False):
        super().__init__(triggerable)
        if not before_train and every_k_steps is None and every_k_epochs is None:
            raise ValueError("PeriodicTrigger: give every_k_steps and/or every_k_epochs (or before_train=True)")
        self._step_k = every_k_steps
        self._epoch_k = every_k_epochs
        self._do_before_train = before_train

    def _before_train(self):
        self.cb.before_train()
        if self._do_before_train:
            self.cb.trigger()

    def _trigger_step(self):
        self.cb.trigger_step()
        if self._step_k is not None and self.global_step % self._step_k == 0:
            self.cb.trigger()

    def _trigger_epoch(self):
        if self._epoch_k is not None and self.epoch_num % self._epoch_k == 0:
            self.cb.trigger()

    def __str__(self):
        return "PeriodicTrigger-" + str(self.cb)


class EnableCallbackIf(ProxyCallback):
    """Run the wrapped callback's per-step and per-epoch methods only while ``pred(self)`` is True."""

    def __init__(self, callback, pred):
        self._pred = pred
        self._enabled = False
        super().__init__(callback)

    def _before_run(self, ctx):
        self._enabled = bool(self._pred(self))
        return super()._before_run(ctx) if self._enabled else None

    def _after_run(self, ctx, rv):
        if self._enabled:
            super()._after_run(ctx, rv)

    def _before_epoch(self):
        if self._pred(self):
            super()._before_epoch()

    def _after_epoch(self):
        if self._pred(self):
            super()._after_epoch()

    def _trigger_epoch(self):
        if self._pred(self):
            super()._trigger_epoch()

    def _trigger_step(self):
        if self._pred(self):
            super()._trigger_step()

    def __str__(self):
        return "EnableCallbackIf-" + str(self.cb)


class PeriodicCallback(EnableCallbackIf):
    """Enable the wrapped callback only when ``global_step % every_k_steps == 0`` or
    ``epoch_num % every_k_epochs == 0`` (and on the very last step)."""

    def __init__(self, callback, every_k_steps=None, every_k_epochs=None):
        if not isinstance(callback, Callback):
            raise TypeError(f"PeriodicCallback: expected a Callback, got {type(callback).__name__}")
        if every_k_steps is None and every_k_epochs is None:
            raise ValueError("PeriodicCallback: every_k_steps and every_k_epochs cannot both be None")
        self._step_k = every_k_steps
        self._epoch_k = every_k_epochs
        super().__init__(callback, PeriodicCallback._predicate)

    def _predicate(self):
        if self._step_k is not None and self.global_step % self._step_k == 0:
            return True
        if self._epoch_k is not None:
            if self.epoch_num % self._epoch_k == 0:
                return True
            if self.local_step == self.trainer.steps_per_epoch - 1 and self.epoch_num == self.trainer.max_epoch:
                return True
        return False

    def __str__(self):
        return "PeriodicCallback-" + str(self.cb)
