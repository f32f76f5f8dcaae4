import sys

from avlm.cli import main

sys.exit(main())
