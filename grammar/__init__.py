"""The grammar of the spec language (resdsl.lark), shipped as package data."""
