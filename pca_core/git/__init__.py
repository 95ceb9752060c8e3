"""The ``git`` artifact repository, on dulwich: pca never runs a ``git`` program.

Loaded through the ``pca.artifact_repos`` entry point ``git``; importing :mod:`pca_core` does not import
it (nor dulwich).
"""

from pca_core.git._plugin import GitOptions, GitRepo

__all__ = ["GitOptions", "GitRepo"]
