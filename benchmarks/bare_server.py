"""The floor for start-up: a pygls server that answers `initialize` and nothing else."""

from pygls.lsp.server import LanguageServer

if __name__ == "__main__":
    LanguageServer("bare", "0").start_io()
