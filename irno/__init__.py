"""IRNO reproduction pipeline: the method, its data, base operators, evaluation and reports, and
the ROMA study beside it. How a run flows from a config to its outputs, and the package's layout
in dependency order: docs/architecture.md.
"""

import logging

__version__ = "0.1.0"


class IrnoError(Exception):
    """A problem the user can fix (bad config, missing file, stale cache, ...).

    The CLI prints the message without a traceback; it must name the file, key or value.
    """


log = logging.getLogger("irno")
