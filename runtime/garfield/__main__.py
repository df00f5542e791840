import sys

from garfield.cli import main

sys.exit(main())
