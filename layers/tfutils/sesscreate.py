"""Session creators (``tensorpack.tfutils.sesscreate``): make a session and initialise its variables."""
from __future__ import annotations

from .._compat import tfv1
from .common import get_default_sess_config

__all__ = ["NewSessionCreator", "ReuseSessionCreator"]


class NewSessionCreator(tfv1.train.SessionCreator):
    """A new ``tf.compat.v1.Session`` on the default graph with global, local and table initializers run.

    Args:
        target: the session target ('' for in-process).
        config: a ConfigProto; default :func:`get_default_sess_config`.
    """

    def __init__(self, target="", config=None):
        self.target = target
        self.user_provided_config = config is not None
        self.config = config if config is not None else get_default_sess_config()

    def create_session(self):
        sess = tfv1.Session(target=self.target, config=self.config)
        sess.run([tfv1.global_variables_initializer(), tfv1.local_variables_initializer(),
                  tfv1.tables_initializer()])
        return sess


class ReuseSessionCreator(tfv1.train.SessionCreator):
    """Returns an existing session as is."""

    def __init__(self, sess):
        self.sess = sess

    def create_session(self):
        return self.sess
