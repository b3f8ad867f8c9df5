"""The callback interface of tensorpack's trainer (``Callback``) and the machinery that runs callbacks.

A trainer calls, in order: ``setup_graph`` (before the graph is finalized: build ops here),
``before_train`` (session ready and restored), then per epoch ``before_epoch``, per step
``before_run``/``after_run`` (hooked onto the training ``Session.run``, to fetch or feed along with
the step) and ``trigger_step``, then ``after_epoch`` and ``trigger_epoch`` (which calls
``trigger``), and finally ``after_train`` (always, also after an error). Subclasses override the
underscored versions (``_setup_graph``, ``_before_train``, ...).
"""
from __future__ import annotations

import traceback

from .._compat import tf, tfv1
from ..tfutils.common import get_op_or_tensor_by_name

__all__ = ["Callback", "ProxyCallback", "CallbackFactory", "Callbacks", "CallbackToHook", "HookToCallback",
           "HookedSession"]


class Callback:
    """Base class of all callbacks.

    Attributes available from ``_setup_graph`` on: ``trainer``, ``graph``, and the trainer's
    ``epoch_num``, ``global_step``, ``local_step``.

    ``chief_only`` (default True) only matters for distributed training, kept for compatibility.
    ``name_scope``: name scope for ops created in ``_setup_graph`` (default: the class name).
    """

    _chief_only = True
    name_scope = ""

    def setup_graph(self, trainer):
        self.trainer = trainer
        self.graph = tfv1.get_default_graph()
        scope = (self.name_scope or type(self).__name__).replace("_", "")
        with tfv1.name_scope(scope):
            self._setup_graph()

    def _setup_graph(self):
        """Build the ops this callback needs (the graph is not finalized yet)."""

    def before_train(self):
        self._before_train()

    def _before_train(self):
        """Called once before the first step, with the session created, initialised and restored."""

    def before_epoch(self):
        self._before_epoch()

    def _before_epoch(self):
        """Called right before each epoch."""

    def after_epoch(self):
        self._after_epoch()

    def _after_epoch(self):
        """Called right after each epoch's last step (before ``trigger_epoch``)."""

    def before_run(self, ctx):
        fetches = self._before_run(ctx)
        if fetches is None:
            return None
        if isinstance(fetches, tfv1.train.SessionRunArgs):
            return fetches
        if not isinstance(fetches, list):
            raise TypeError(f"{self}: _before_run must return None, a SessionRunArgs or a list of "
                            f"tensors/names, got {type(fetches).__name__}")
        ret = [f if isinstance(f, (tf.Tensor, tf.Operation)) else get_op_or_tensor_by_name(f) for f in fetches]
        return tfv1.train.SessionRunArgs(fetches=ret)

    def _before_run(self, ctx):
        """Return extra fetches/feeds (a ``SessionRunArgs`` or a list) for the coming training step."""
        return None

    def after_run(self, run_context, run_values):
        self._after_run(run_context, run_values)

    def _after_run(self, run_context, run_values):
        """Receive ``run_values.results`` for what ``_before_run`` asked."""

    def trigger_step(self):
        self._trigger_step()

    def _trigger_step(self):
        """Called after every training step."""

    def trigger_epoch(self):
        self._trigger_epoch()

    def _trigger_epoch(self):
        """Called after every epoch; calls :meth:`trigger` by default."""
        self.trigger()

    def trigger(self):
        self._trigger()

    def _trigger(self):
        """The callback's periodic action (every epoch by default; see ``PeriodicTrigger``)."""

    def after_train(self):
        self._after_train()

    def _after_train(self):
        """Called once after training, also when it failed or was stopped."""

    @property
    def epoch_num(self):
        return self.trainer.epoch_num

    @property
    def global_step(self):
        return self.trainer.global_step

    @property
    def local_step(self):
        return self.trainer.local_step

    @property
    def chief_only(self):
        return self._chief_only

    @chief_only.setter
    def chief_only(self, v):
        self._chief_only = v

    def set_chief_only(self, v=True):
        self._chief_only = v
        return self

    def __str__(self):
        return type(self).__name__

    def get_tensors_maybe_in_tower(self, names):
        """Tensors by name in the graph, or else in the first training tower (``tower0/...``)."""
        def get(name):
            try:
                return get_op_or_tensor_by_name(name)
            except KeyError:
                pass
            towers = getattr(self.trainer, "towers", None)
            if towers is not None and len(towers.training()):
                try:
                    return towers.training()[0][name]
                except KeyError:
                    pass
            raise KeyError(f"Tensor {name} not found in the graph!")
        return [get(n) for n in names]


class ProxyCallback(Callback):
    """Forwards every method to another callback (base of wrappers such as ``PeriodicTrigger``)."""

    def __init__(self, cb):
        if not isinstance(cb, Callback):
            raise TypeError(f"{type(self).__name__}: expected a Callback, got {type(cb).__name__}")
        self.chief_only = cb.chief_only
        self.cb = cb

    def _setup_graph(self):
        with tfv1.name_scope(None):
            self.cb.setup_graph(self.trainer)

    def _before_train(self):
        self.cb.before_train()

    def _trigger_epoch(self):
        self.cb.trigger_epoch()

    def _trigger(self):
        self.cb.trigger()

    def _trigger_step(self):
        self.cb.trigger_step()

    def _after_train(self):
        self.cb.after_train()

    def _before_epoch(self):
        self.cb.before_epoch()

    def _after_epoch(self):
        self.cb.after_epoch()

    def _before_run(self, ctx):
        return self.cb._before_run(ctx)

    def _after_run(self, ctx, run_values):
        self.cb._after_run(ctx, run_values)

    def __str__(self):
        return "Proxy-" + str(self.cb)


class CallbackFactory(Callback):
    """A callback from functions; each takes the callback itself as its only argument."""

    def __init__(self, setup_graph=None, before_train=None, trigger=None, after_train=None):
        self._cb_setup_graph = setup_graph
        self._cb_before_train = before_train
        self._cb_trigger = trigger
        self._cb_after_train = after_train

    def _setup_graph(self):
        if self._cb_setup_graph:
            self._cb_setup_graph(self)

    def _before_train(self):
        if self._cb_before_train:
            self._cb_before_train(self)

    def _trigger(self):
        if self._cb_trigger:
            self._cb_trigger(self)

    def _after_train(self):
        if self._cb_after_train:
            self._cb_after_train(self)


class Callbacks(Callback):
    """Runs a list of callbacks in order (what the trainer holds)."""

    def __init__(self, cbs):
        for cb in cbs:
            if not isinstance(cb, Callback):
                raise TypeError(f"Callbacks: {cb!r} is not a Callback")
        self.cbs = list(cbs)

    def _setup_graph(self):
        with tfv1.name_scope(None):
            for cb in self.cbs:
                cb.setup_graph(self.trainer)

    def _before_train(self):
        for cb in self.cbs:
            cb.before_train()

    def _after_train(self):
        # Every callback gets to clean up (stop threads, close files), even if another one fails.
        for cb in self.cbs:
            try:
                cb.after_train()
            except Exception:
                traceback.print_exc()

    def get_hooks(self):
        return [CallbackToHook(cb) for cb in self.cbs]

    def trigger_step(self):
        for cb in self.cbs:
            cb.trigger_step()

    def _trigger_epoch(self):
        for cb in self.cbs:
            cb.trigger_epoch()

    def _before_epoch(self):
        for cb in self.cbs:
            cb.before_epoch()

    def _after_epoch(self):
        for cb in self.cbs:
            cb.after_epoch()


class CallbackToHook(tfv1.train.SessionRunHook):
    """A ``SessionRunHook`` running a callback's ``before_run``/``after_run``."""

    def __init__(self, cb):
        self._cb = cb

    def before_run(self, run_context):
        return self._cb.before_run(run_context)

    def after_run(self, run_context, run_values):
        self._cb.after_run(run_context, run_values)


class HookToCallback(Callback):
    """Run a ``tf.compat.v1.train.SessionRunHook`` as a callback (``after_create_session`` gets
    ``coord=None``; ``end`` runs after training)."""

    _chief_only = False

    def __init__(self, hook):
        self._hook = hook

    def _setup_graph(self):
        with tfv1.name_scope(None):
            self._hook.begin()

    def _before_train(self):
        self._hook.after_create_session(self.trainer.sess, None)

    def _before_run(self, ctx):
        return self._hook.before_run(ctx)

    def _after_run(self, ctx, run_values):
        self._hook.after_run(ctx, run_values)

    def _after_train(self):
        self._hook.end(self.trainer.sess)


class HookedSession:
    """``Session.run`` with ``SessionRunHook``s: each hook's ``before_run`` adds fetches and feeds to
    the call and its ``after_run`` gets the results. A hook may ``request_stop()``; then
    :meth:`should_stop` is True. (tf.compat.v1's MonitoredSession without its session management.)"""

    def __init__(self, sess, hooks):
        self.sess = sess
        self._hooks = list(hooks)
        self._should_stop = False

    def run(self, fetches, feed_dict=None, options=None):
        ctx = tfv1.train.SessionRunContext(tfv1.train.SessionRunArgs(fetches, feed_dict), self.sess)
        feed = dict(feed_dict or {})
        hook_fetches, wanted = [], []
        for h in self._hooks:
            req = h.before_run(ctx)
            # Session.run refuses None fetches: a hook that asked for nothing fetches [] and gets None back.
            asked = req is not None and req.fetches is not None
            hook_fetches.append(req.fetches if asked else [])
            wanted.append(asked)
            if req is not None and req.feed_dict:
                clash = [k for k in req.feed_dict if k in feed]
                if clash:
                    raise RuntimeError(f"Two hooks (or a hook and the caller) feed the same tensors: {clash}")
                feed.update(req.feed_dict)
            if req is not None and req.options is not None:
                options = _merge_options(options, req.options)
        results = self.sess.run({"caller": fetches, "hooks": hook_fetches}, feed_dict=feed or None,
                                options=options)
        for h, r, w in zip(self._hooks, results["hooks"], wanted, strict=True):
            h.after_run(ctx, tfv1.train.SessionRunValues(results=r if w else None, options=options,
                                                         run_metadata=None))
        if ctx.stop_requested:
            self._should_stop = True
        return results["caller"]

    def should_stop(self) -> bool:
        return self._should_stop

    def request_stop(self):
        self._should_stop = True


def _merge_options(a, b):
    if a is None:
        return b
    merged = tfv1.RunOptions()
    merged.CopyFrom(a)
    merged.MergeFrom(b)
    return merged
