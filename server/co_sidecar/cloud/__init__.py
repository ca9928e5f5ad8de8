"""Codex Cloud execution: client interface, factory, HTTP and CLI adapters, poller, executor.

Deliberately empty of imports: the server imports submodules only when a cloud
run or a doctor check needs them, so startup stays fast.
"""
