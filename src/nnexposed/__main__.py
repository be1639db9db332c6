import sys

from nnexposed.cli import main

sys.exit(main())
