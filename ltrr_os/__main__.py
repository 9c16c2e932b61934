"""`python -m ltrr_os` runs the `ltrr` command line."""

from .cli import main

main()
