"""`python -m aotcheck`, the same as the `aotcheck` command."""

from aotcheck._cli import main

main()
