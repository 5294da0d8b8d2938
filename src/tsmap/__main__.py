import sys

from tsmap.cli import main

sys.exit(main())
