"""Search spaces: each owns its decisions, its encoding and its model builders."""
