"""python -m cqtrestore: the command-line tool."""

from cqtrestore.cli import main

main()
