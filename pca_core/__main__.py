import sys

from pca_core.cli import main

sys.exit(main())
