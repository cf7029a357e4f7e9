"""`python -m factory.cli`."""

import sys

from factory.cli.commands import main

sys.exit(main())
