"""The layer nodes, one module each; the function name is the node name."""

from kgot_errors.nodes.backoff import backoff
from kgot_errors.nodes.classify import classify
from kgot_errors.nodes.finish import finish
from kgot_errors.nodes.human import human
from kgot_errors.nodes.llm_fix import llm_fix
from kgot_errors.nodes.parser_fix import parser_fix
from kgot_errors.nodes.refine import refine
from kgot_errors.nodes.sandbox import sandbox
from kgot_errors.nodes.unicode_fix import unicode_fix
from kgot_errors.nodes.vote import vote

__all__ = ["backoff", "classify", "finish", "human", "llm_fix", "parser_fix", "refine", "sandbox", "unicode_fix", "vote"]
