"""The user-mistake base class: what a command turns into one line on stderr and exit code 2.

Every error caused by the user's input (a config value, a data file, a checkpoint, CLIP weights,
a command-line argument) derives from ``UserError`` as well as from the builtin it always was
(``ValueError``, ``FileNotFoundError``), so callers that catch the builtin keep working. Its message
names the file (and line / frame / key) and what was expected. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: reported as ``t4p: error: <message>`` with exit code 2."""
