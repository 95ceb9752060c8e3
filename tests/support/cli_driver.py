"""Runs many ``pca`` commands in one fresh interpreter: ``python -m tests.support.cli_driver``.

Reads a JSON list of ``{"args": [...], "env": {...}}`` on standard input; runs ``pca ARGS`` for each with
those environment variables set (and ``PCA_*`` variables of the caller removed), and prints a JSON list of
``{"code": exit code, "stdout": ..., "stderr": ...}``. One interpreter for every run keeps a parametrized
test of dozens of commands fast, while each run still goes through ``main`` exactly as ``pca`` does.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys

from pca_core.cli.main import main


def _run(args: list[str], env: dict[str, str]) -> dict[str, object]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update({k: v for k, v in saved.items() if not k.startswith("PCA_")}, **env)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


if __name__ == "__main__":
    cases = json.load(sys.stdin)
    json.dump([_run(case["args"], case.get("env", {})) for case in cases], sys.stdout)
