import sys

from pca_core.cli.main import main

sys.exit(main())
