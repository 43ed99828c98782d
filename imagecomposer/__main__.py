import sys

from imagecomposer.cli.main import main

sys.exit(main())
