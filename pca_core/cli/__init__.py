"""The ``pca`` command: argument parsing, logging set-up, the demo and the control-plane simulator."""
