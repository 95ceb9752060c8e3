"""The options of the ``git`` artifact repository, and the checks types alone cannot make."""

from __future__ import annotations

import re

from pca_core.api import ConfigIssue, PluginOptions

DEFAULT_EMAIL = "author@example.org"  # the original agent's committer e-mail
_AUTHOR = re.compile(r"^[^<>\n]+ <[^<>\n]*>$")


class GitOptions(PluginOptions):
    """Options of the ``git`` artifact repository (``[artifacts.options]``).

    Attributes:
        atomic: check each revision out into its own directory and switch a symlink at the working
            directory to it (read-only publication; no commit and push).
        keep_revisions: in atomic mode, how many previous revisions to keep besides the current one.
        author: ``Name <email>`` of the commits pca makes; default ``<tenant id> <author@example.org>``,
            as the original agent.
        timeout: seconds allowed to connect to a remote, and for each read from it.
        ssh_key_file: the private key for ``ssh://`` remotes (run through the system ``ssh`` client).
    """

    atomic: bool = False
    keep_revisions: int = 2
    author: str | None = None
    timeout: float = 60.0
    ssh_key_file: str | None = None


def option_issues(options: GitOptions) -> list[ConfigIssue]:
    """Every option out of its range, and an author not of the form ``Name <email>``."""
    issues = []
    if options.keep_revisions < 0:
        issues.append(ConfigIssue("options.keep_revisions", f"0 or more, got {options.keep_revisions}"))
    if not options.timeout > 0:
        issues.append(ConfigIssue("options.timeout", f"a positive number of seconds, got {options.timeout}"))
    if options.author is not None and not _AUTHOR.match(options.author):
        issues.append(ConfigIssue("options.author", f"'Name <email>', got {options.author!r}"))
    return issues
