"""pca-core: the cloud-instance agent's core and the contracts its plugins implement.

The package's names are the plugin API of :mod:`pca_core.api`, re-exported, and ``__version__``.
"""

from pca_core._version import __version__
from pca_core.api import *  # noqa: F403 - the plugin API, re-exported whole
from pca_core.api import __all__ as _api_all

__all__ = [*_api_all, "__version__"]
