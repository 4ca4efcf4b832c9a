import sys

from search.cli.app import main

sys.exit(main())
