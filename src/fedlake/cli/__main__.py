"""``python -m fedlake.cli``."""

from fedlake.cli.main import main

main()
