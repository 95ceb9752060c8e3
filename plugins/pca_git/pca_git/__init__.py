"""pca-git: the ``git`` artifact repository of pca, on dulwich; pca never runs a ``git`` program.

Loaded through the ``pca.artifact_repos`` entry point ``git``; importing :mod:`pca_core` does not import
it (nor dulwich).
"""

from pca_git._options import GitOptions
from pca_git._plugin import GitRepo

__version__ = "1.0.0"

__all__ = ["GitOptions", "GitRepo", "__version__"]
