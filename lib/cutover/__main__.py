import sys

from lib.cutover.cli import main

sys.exit(main())
