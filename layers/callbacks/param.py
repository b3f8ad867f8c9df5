"""Hyperparameter setters: change a graph variable (e.g. ``learning_rate``) during training.

A string param names a scalar variable (``'learning_rate'`` or ``'learning_rate:0'``); the setter
assigns it through an op built before the graph is finalized, so reading the variable back
(``trainer.sess.run``) shows the value in effect.
"""
from __future__ import annotations

import collections
import operator
import os

import numpy as np

from .._compat import tfv1
from ..tfutils.common import get_op_tensor_name
from ..utils import logger
from .base import Callback

__all__ = ["HyperParam", "GraphVarParam", "ObjAttrParam", "HyperParamSetter", "HumanHyperParamSetter",
           "ScheduledHyperParamSetter", "HyperParamSetterWithFunc", "StatMonitorParamSetter"]


class HyperParam:
    """Something that can be set and read: :meth:`set_value`, :meth:`get_value`, ``readable_name``."""

    def setup_graph(self):
        pass

    def set_value(self, v):
        raise NotImplementedError

    def get_value(self):
        raise NotImplementedError

    @property
    def readable_name(self):
        return self._readable_name


class GraphVarParam(HyperParam):
    """A variable of the graph (global or local), found by name."""

    def __init__(self, name, shape=()):
        self.name = name
        self.shape = shape
        self._readable_name, self.var_name = get_op_tensor_name(name)

    def setup_graph(self):
        for v in tfv1.global_variables() + tfv1.local_variables():
            if v.name == self.var_name:
                self.var = v
                break
        else:
            raise ValueError(f"{self.var_name} is not a variable in the graph!")
        self._value = tfv1.placeholder(self.var.dtype.base_dtype, self.shape, name=self._readable_name + "_value")
        self._assign = self.var.assign(self._value).op

    def set_value(self, v):
        if not self.var.dtype.is_floating and isinstance(v, float):
            raise ValueError(f"HyperParam {self.name} has type '{self.var.dtype}'. Cannot update it using float "
                             "values.")
        tfv1.get_default_session().run(self._assign, {self._value: v})

    def get_value(self):
        return tfv1.get_default_session().run(self.var)


class ObjAttrParam(HyperParam):
    """An attribute ``attrname`` of a Python object."""

    def __init__(self, obj, attrname, readable_name=None):
        self.obj = obj
        self.attrname = attrname
        self._readable_name = readable_name or attrname

    def set_value(self, v):
        setattr(self.obj, self.attrname, v)

    def get_value(self):
        return getattr(self.obj, self.attrname)


class HyperParamSetter(Callback):
    """Base: on every trigger (and in ``before_train``) set the param to :meth:`_get_value_to_set`
    unless it returns None."""

    _chief_only = False
    _enable_before_train = True

    def __init__(self, param):
        if isinstance(param, str):
            param = GraphVarParam(param)
        if not isinstance(param, HyperParam):
            raise TypeError(f"{type(self).__name__}: param must be a str or a HyperParam, got {type(param).__name__}")
        self.param = param
        self._last_value = None
        self._last_epoch_set = -1

    def _setup_graph(self):
        self.param.setup_graph()

    def get_value_to_set(self):
        ret = self._get_value_to_set()
        if ret is not None and ret != self._last_value:
            if self.epoch_num != self._last_epoch_set:
                if self._last_value is None:
                    logger.info("[HyperParamSetter] At global_step=%d, %s is set to %.6f", self.global_step,
                                self.param.readable_name, ret)
                else:
                    logger.info("[HyperParamSetter] At global_step=%d, %s changes from %.6f to %.6f",
                                self.global_step, self.param.readable_name, self._last_value, ret)
            self._last_epoch_set = self.epoch_num
            self._last_value = ret
        return ret

    def _get_value_to_set(self):
        raise NotImplementedError

    def get_current_value(self):
        return self.param.get_value()

    def _trigger(self):
        self._set_param()

    def _before_train(self):
        if self._enable_before_train:
            self._set_param()

    def _set_param(self):
        v = self.get_value_to_set()
        if v is not None:
            self.param.set_value(v)


class HumanHyperParamSetter(HyperParamSetter):
    """Read ``name:value`` lines from ``<logger dir>/<file_name>`` on every trigger (manual tuning)."""

    def __init__(self, param, file_name="hyper.txt"):
        super().__init__(param)
        self.file_name = os.path.join(logger.get_logger_dir(), file_name)
        logger.info("Use %s to set hyperparam: '%s'.", self.file_name, self.param.readable_name)

    def _get_value_to_set(self):
        if not os.path.isfile(self.file_name):
            return None
        try:
            with open(self.file_name) as f:
                dic = {k.strip(): float(v) for k, v in (line.strip().split(":") for line in f if line.strip())}
            return dic[self.param.readable_name]
        except (ValueError, KeyError):
            logger.warning("Cannot find %s in %s", self.param.readable_name, self.file_name)
            return None


class ScheduledHyperParamSetter(HyperParamSetter):
    """Set the param by a schedule ``[(epoch, value), ...]``: each value is set **after** epoch
    ``epoch`` completes (epoch 0: before the first epoch).

    Args:
        interp: None (values change only at the listed points) or ``'linear'`` (interpolate between
            them, no extrapolation).
        step_based: the schedule counts global steps instead of epochs.
        set_at_beginning: at ``before_train`` (e.g. a resumed run) set the value the schedule implies
            for the current point if the variable differs from it.
    """

    def __init__(self, param, schedule, interp=None, step_based=False, set_at_beginning=True):
        self.schedule = sorted(((int(a), float(b)) for a, b in schedule), key=operator.itemgetter(0))
        if interp not in (None, "linear"):
            raise ValueError(f"ScheduledHyperParamSetter: interp must be None or 'linear', got {interp!r}")
        self.interp = interp
        self._step = step_based
        self._set_at_beginning = set_at_beginning
        super().__init__(param)

    def _get_value_to_set(self):
        return self._get_value_to_set_at_point(self._current_point())

    def _current_point(self):
        return self.global_step if self._step else self.epoch_num

    def _check_value_at_beginning(self):
        v = None
        for p in range(0, self._current_point() + 1):
            v = self._get_value_to_set_at_point(p) or v
        actual = self.param.get_value()
        if v is not None and not np.isclose(v, actual):
            logger.warning("According to %s, parameter '%s' should be %.7g at the current point, but it is %.7g.",
                           self, self.param.readable_name, v, actual)
            if self._set_at_beginning:
                logger.info("Setting '%s' to %.7g.", self.param.readable_name, v)
                self.param.set_value(v)

    def _get_value_to_set_at_point(self, point):
        laste, lastv = None, None
        for e, v in self.schedule:
            if e == point:
                return v
            if e > point:
                break
            laste, lastv = e, v
        if laste is None or laste == e:       # before the first point, or past the last one
            return None
        if self.interp is None:
            return None
        return (point - laste) * 1.0 / (e - laste) * (v - lastv) + lastv

    def _before_train(self):
        super()._before_train()
        self._check_value_at_beginning()

    def _trigger_epoch(self):
        if not self._step:
            self.trigger()

    def _trigger_step(self):
        if self._step:
            self.trigger()

    def __str__(self):
        return f"ScheduledHyperParamSetter(schedule={self.schedule})"


class HyperParamSetterWithFunc(HyperParamSetter):
    """Set the param to ``func(epoch_num, old_value)`` on every trigger (and before training, with
    ``epoch_num`` = starting_epoch - 1)."""

    def __init__(self, param, func):
        super().__init__(param)
        self.f = func

    def _get_value_to_set(self):
        return self.f(self.epoch_num, self.get_current_value())


class StatMonitorParamSetter(HyperParamSetter):
    """Set the param to ``value_func(old)`` when statistic ``stat_name`` stops improving: over its
    last ``last_k`` values, ``min >= first - threshold`` (``reverse=True``: ``max <= first + threshold``).
    The history restarts after each change. ``value_func`` may raise ``StopTraining``."""

    _enable_before_train = False

    def __init__(self, param, stat_name, value_func, threshold, last_k, reverse=False):
        super().__init__(param)
        self.stat_name = stat_name
        self.value_func = value_func
        self.history = collections.deque(maxlen=last_k)
        self.threshold = threshold
        self.reverse = reverse

    def _get_value_to_set(self):
        hist = self.trainer.monitors.get_history(self.stat_name)
        if not hist:
            logger.warning("[StatMonitorParamSetter] No history data available for key '%s'.", self.stat_name)
            return None
        last = hist[-1]
        if self.history and last[0] == self.history[-1][0]:
            logger.warning("StatMonitorParamSetter is triggered, but no new data has been added since last time.")
            return None
        self.history.append(last)
        if len(self.history) < self.history.maxlen:
            return None
        values = [k[1] for k in self.history]
        first = values[0]
        if not self.reverse and min(values) < first - self.threshold:
            return None
        if self.reverse and max(values) > first + self.threshold:
            return None
        self.history.clear()
        logger.info("[StatMonitorParamSetter] Triggered, history of %s: %s", self.stat_name,
                    ",".join(str(round(x, 3)) for x in values))
        return self.value_func(self.get_current_value())
