import sys

from imagecomposer.cli.main import main

if __name__ == "__main__":  # not when build_many's processes import the main module
    sys.exit(main())
