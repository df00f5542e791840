"""Example tasks: what a user's own entry point looks like (model, loss, optimizer, data)."""
