"""The layer nodes, one module each (`kgot_errors.nodes.parser_fix.parser_fix`); the function name is the node
name. Importing this package loads no node: the deterministic helpers (`_base`, `_json`) work without LangGraph."""
