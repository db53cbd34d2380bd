"""``python -m stream``: the Faust command line plus the project's commands."""

from stream.cli.main import main

if __name__ == "__main__":
    main()
