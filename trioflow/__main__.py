import sys

from trioflow.cli import main

sys.exit(main())
