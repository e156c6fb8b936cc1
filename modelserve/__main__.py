"""Allow ``python -m modelserve``."""

from modelserve.cli.main import main

main()
