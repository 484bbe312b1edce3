"""Presentation: the words and tables made from a command's structured result (markdown, plain text).

Nothing here decides anything; it only renders numbers and outcomes that `plan/` and `analysis/` produced.
"""
